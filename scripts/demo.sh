#!/usr/bin/env bash
# The main job, end to end through the CLI: one network over a /16, a few
# hundred containers made every way the model allows, some destroyed, a few
# refused commands, then the containers and the pool usage.
# Needs `netledger` on PATH and NETLEDGER_DB set (make demo does both).
set -euo pipefail

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
refused() {
    printf '$ %s\n' "$*"
    local status=0
    "$@" || status=$?
    if [ "$status" -eq 0 ]; then
        echo "demo: expected this command to be refused, but it succeeded" >&2
        exit 1
    fi
    echo "(exit status $status)"
}

echo "event store: ${NETLEDGER_DB}"

step "A network over a /16, leaving out 10.20.0.0/28"
show netledger network create prod --pool 10.20.0.0/16 --exclude 10.20.0.0/28 \
    --actor platform-team --reason "production container network"

step "240 containers from the pool"
for i in $(seq -f %03g 1 240); do
    netledger container create prod --id "web-$i" --actor scheduler >/dev/null
done
show netledger container show prod web-001

step "Ten containers with addresses chosen by the operator"
for i in $(seq 1 10); do
    netledger container create prod --id "pinned-$i" --ip "10.20.200.$i" --actor operator >/dev/null
done
show netledger container show prod pinned-1

step "Two shared special subnets outside the pool"
for i in $(seq 1 12); do
    netledger container create prod --id "db-$i" --subnet 192.168.50.0/24 --ip "192.168.50.$((i + 10))" >/dev/null
    netledger container create prod --id "cache-$i" --subnet 172.30.8.0/25 --ip "172.30.8.$((i + 10))" >/dev/null
done
show netledger container show prod db-1

step "Forty-one containers destroyed: web-001 to web-040 here, then db-12"
printf '$ for i in 001 ... 040; do netledger container destroy prod "web-$i" --reason "scaled down"; done\n'
for i in $(seq -f %03g 1 40); do
    netledger container destroy prod "web-$i" --reason "scaled down" >/dev/null
done
show netledger container destroy prod db-12
show netledger container create prod --id web-new

step "Commands the model refuses (nothing is written for them)"
refused netledger container create prod --id late --ip 10.20.200.3
refused netledger container create prod --id overlap --subnet 192.168.50.128/25 --ip 192.168.50.130
refused netledger container create prod --id inside --subnet 10.20.64.0/24 --ip 10.20.64.9
refused netledger container create prod --id web-100
refused netledger pool release prod 10.20.200.1
refused netledger container destroy prod no-such-container
refused netledger container create prod --ip 10.20.0.300

step "Bare pool operations"
printf '$ netledger pool allocate prod --two --json\n'
pair=$(netledger pool allocate prod --two --json --reason "reserved for the load balancer")
echo "$pair"
reserved_ip=$(printf '%s' "$pair" | python3 -c 'import json, sys; print(json.load(sys.stdin)["ip"])')
show netledger pool release prod "$reserved_ip" 10.20.255.1 8.8.8.8

step "An address that was one container's gateway becomes another's ip"
show netledger container show prod web-200
gateway=$(netledger container show prod web-200 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["gateway"])')
show netledger container destroy prod web-200 --reason "node drained"
show netledger container create prod --id api-1 --ip "$gateway" --actor operator

step "Audit: who held that address, over time and at one moment"
show netledger audit ip "$gateway"
held_at=$(netledger audit ip "$gateway" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["tenancies"][0]["from"]["time"])')
show netledger audit ip "$gateway" --at "$held_at"
show netledger audit container web-200
show netledger events --container web-200

step "Replay: the network as it was before the scale-down"
before=$(netledger events --network prod --type ContainerDestroyed --limit 1 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["events"][0]["position"] - 1)')
printf '$ netledger replay prod --position %s --json   (summarized)\n' "$before"
netledger replay prod --position "$before" --json | python3 -c '
import json, sys
state = json.load(sys.stdin)
version, containers = state["version"], len(state["containers"])
allocated, free = state["allocated_count"], state["free"]
print(f"at version {version}: {containers} containers, {allocated} addresses allocated, {free} free")
'

step "The containers and the pool usage"
printf '$ netledger container list prod --json   (summarized; an ip chosen from the pool with --ip counts as pooled)\n'
netledger container list prod --json | python3 -c '
import collections, json, sys
rows = json.load(sys.stdin)
kinds = collections.Counter(row["kind"] for row in rows)
subnets = collections.Counter(row["subnet"] for row in rows if row["kind"] == "subnet")
pooled, special = kinds["pooled"], kinds["subnet"]
print(f"{len(rows)} containers: {pooled} pooled, {special} in special subnets")
for subnet, count in sorted(subnets.items()):
    print(f"  {subnet}: {count} containers")
'
show netledger network show prod
show netledger occupancy prod
show netledger free prod

step "Verify: replay every event, re-check the invariants, the hash chain and the read models"
show netledger verify
