# The netledger CLI in an image. Arguments after the image name are netledger
# arguments, and NETLEDGER_DB selects the event store, for example
#   docker run --rm -e NETLEDGER_DB=postgresql://USER:PASSWORD@HOST:5432/DBNAME netledger network list
FROM python:3.11-slim

# A short-lived CLI gains nothing from .pyc files or pip's download cache.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install .

# Run as an ordinary user. Its home directory holds the default SQLite ledger
# when NETLEDGER_DB is not set.
RUN useradd --create-home --uid 10001 netledger
USER netledger
WORKDIR /home/netledger

ENTRYPOINT ["netledger"]
CMD ["--help"]
