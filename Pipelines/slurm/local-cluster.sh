#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests: munged, slurmctld and slurmd started
# directly (no systemd), every file under one state directory.
#
#   Pipelines/slurm/local-cluster.sh start DIR   start; prints `export SLURM_CONF=DIR/slurm.conf`
#   Pipelines/slurm/local-cluster.sh stop DIR    stop every daemon it started (by pid)
#
# Debian 12's slurm-wlm (22.05) authenticates with munge. The configuration avoids what fails
# in containers: no cgroups (proctrack/linuxproc, task/none), no accounting daemon.
# Every wait is bounded; on a failure the daemons' logs are printed and everything stopped.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

logs() {
    for f in "$dir"/munged.log "$dir"/slurmctld.log "$dir"/slurmd.log; do
        [ -f "$f" ] && { echo "---- $f (last 40 lines)" >&2; tail -n 40 "$f" >&2; }
    done
    return 0
}

stop() {
    # slurmd first (it has jobs' processes), then slurmctld, then munged; by pid file, then
    # by the pids the start recorded, each with a bounded wait and SIGKILL after it.
    for name in slurmd slurmctld munged; do
        for pidfile in "$dir/$name.pid"; do
            [ -f "$pidfile" ] || continue
            pid=$(cat "$pidfile" 2>/dev/null || true)
            [ -n "$pid" ] || continue
            if kill -0 "$pid" 2>/dev/null; then
                kill -TERM "$pid" 2>/dev/null || true
                for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
            fi
            rm -f "$pidfile"
        done
    done
}

fail() {
    echo "local-cluster: $*" >&2
    logs
    stop
    exit 1
}

wait_for() {  # SECONDS WHAT COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "$what within $seconds s"
}

start() {
    for t in munged slurmctld slurmd sinfo sbatch; do
        command -v "$t" >/dev/null || { echo "local-cluster: $t is missing (apt-get install slurm-wlm munge)" >&2; exit 1; }
    done
    stop
    mkdir -p "$dir/spool/ctld" "$dir/spool/d" "$dir/logs"
    chmod 0700 "$dir"
    # munge: a key owned by this user, mode 0400, and a socket in the state directory.
    if [ ! -f "$dir/munge.key" ]; then
        dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
        chmod 0400 "$dir/munge.key"
    fi
    munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" --pid-file="$dir/munged.pid" \
        --log-file="$dir/munged.log" --seed-file="$dir/munged.seed" || fail "munged did not start"
    wait_for 10 "munged did not open its socket" test -S "$dir/munge.socket"

    # The node as slurmd sees it, so the configuration matches the hardware.
    local node
    node=$(slurmd -C | head -n 1)
    local host
    host=$(echo "$node" | sed -E 's/^NodeName=([^ ]+).*/\1/')
    cat >"$dir/slurm.conf" <<EOF
ClusterName=vidx-test
SlurmctldHost=$host
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
SlurmctldPort=$((20000 + RANDOM % 20000))
SlurmdPort=$((40000 + RANDOM % 20000))
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=1
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=5
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$dir/slurm.conf" || fail "slurmctld did not start"
    wait_for 30 "slurmctld did not answer" scontrol ping
    slurmd -f "$dir/slurm.conf" || fail "slurmd did not start"
    local state=""
    for _ in $(seq 600); do
        state=$(sinfo -h -o %t 2>/dev/null | head -n 1 || true)
        [ "$state" = "idle" ] && break
        sleep 0.1
    done
    [ "$state" = "idle" ] || fail "slurmd did not register within 60 s (node state '${state:-none}')"
    echo "export SLURM_CONF=$dir/slurm.conf"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
