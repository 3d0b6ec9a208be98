#!/usr/bin/env bash
# A real one-node SLURM with accounting, for trying `--executor slurm` and for the tests marked `slurm`.
#
#   sudo tools/slurm-local.sh start    # install (Debian packages) if missing, configure, start; idempotent
#   sudo tools/slurm-local.sh status   # the daemons, sinfo
#   sudo tools/slurm-local.sh stop     # cancel every job, stop every daemon this script started, by pid
#
# Debian 12's slurmctld, slurmd, slurm-client and munge, plus slurmdbd on a MariaDB reached through
# its Unix socket only (no TCP port): without accounting `sacct` fails and a job killed hard is never
# seen to end. No systemd is assumed: the daemons are started by hand, their pids kept in $RUN.
# Choices that make a one-node test cluster usable (each measured in ../shared/reviews/scaleout-2026-12.md):
# cred_expire=10 and bf_interval=2 (a requeued job restarts in seconds, not after 134 s), MailProg
# /bin/true, MpiDefault none, proctrack/linuxproc + task/none (no cgroups), CR_Core (memory is not
# a consumable resource). State is kept across restarts, so job ids continue.
set -euo pipefail

RUN=${VPBENCH_SLURM_RUN:-/run/slurm-local}
STATE=${VPBENCH_SLURM_STATE:-/var/lib/slurm-local}
CONF=/etc/slurm
CLUSTER=vpbench
NODE=$(hostname -s)
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

say() { echo "slurm-local: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts daemons)"

alive() {  # alive NAME: the daemon whose pid file we wrote is running
    local pid
    pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

install() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

configure() {
    mkdir -p "$RUN" "$STATE/ctld" "$STATE/d" "$STATE/log" "$CONF" /run/munge /run/mysqld
    chown munge:munge /run/munge
    chown mysql:mysql /run/mysqld
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    local cpus mem
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat > "$CONF/slurm.conf" <<EOF
# written by vpbench tools/slurm-local.sh: a one-node test cluster
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2
ReturnToService=2
SlurmdTimeout=30
KillWait=5
MinJobAge=300
JobRequeue=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    cat > "$CONF/slurmdbd.conf" <<EOF
# written by vpbench tools/slurm-local.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$CONF/slurmdbd.conf"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq $((limit * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not come up in ${limit} s (logs: $STATE/log/)"
}

start_daemons() {
    if ! alive munged; then
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid --force
        wait_for 10 munged test -s /run/munge/munged.pid
        cp /run/munge/munged.pid "$RUN/munged.pid"
    fi
    if ! alive mariadbd; then
        [ -d /var/lib/mysql/mysql ] || mysql_install_db --user=mysql --skip-test-db >/dev/null
        runuser -u mysql -- /usr/sbin/mariadbd --skip-networking --socket=/run/mysqld/mysqld.sock \
            --pid-file="$RUN/mariadbd.pid" --log-error="$STATE/log/mariadb.log" >/dev/null 2>&1 &
        # mariadbd writes its pid file itself, as the mysql user: give it the directory
        chmod 1777 "$RUN"
        wait_for 30 mariadbd mysqladmin --socket=/run/mysqld/mysqld.sock ping
        # root over the Unix socket authenticates by unix_socket, as slurmdbd (root) connects
    fi
    if ! alive slurmdbd; then
        /usr/sbin/slurmdbd
        wait_for 30 slurmdbd sacctmgr -n list cluster
    fi
    sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    if ! alive slurmctld; then
        /usr/sbin/slurmctld
        wait_for 30 slurmctld scontrol ping
    fi
    if ! alive slurmd; then
        /usr/sbin/slurmd
    fi
    wait_for 30 "the node" sh -c "sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc)'"
}

stop_daemons() {
    if alive slurmctld; then  # while slurmctld is up, so that every step can report its end
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null | sort -u)
        [ -n "$jobs" ] && scancel --quiet $jobs 2>/dev/null
        for _ in $(seq 75); do
            [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        alive "$name" || { rm -f "$RUN/$name.pid"; continue; }
        local pid
        pid=$(cat "$RUN/$name.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && { say "$name ($pid) ignored SIGTERM for 20 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
        rm -f "$RUN/$name.pid"
    done
    # job steps of this one-node cluster left without their slurmd, and what they started
    local step
    for step in $(pgrep -x slurmstepd); do killtree "$step"; done
}

killtree() {  # killtree PID: PID and every process below it, children first
    local child
    for child in $(pgrep -P "$1"); do killtree "$child"; done
    kill -KILL "$1" 2>/dev/null || true
}

case "${1:-}" in
    start)
        install
        configure
        start_daemons
        say "up: $(sinfo -h -o '%P %a %D %t' | head -1) (stop with: $0 stop)"
        ;;
    stop)
        stop_daemons
        say "stopped"
        ;;
    status)
        for name in munged mariadbd slurmdbd slurmctld slurmd; do
            if alive "$name"; then echo "$name running (pid $(cat "$RUN/$name.pid"))"; else echo "$name stopped"; fi
        done
        alive slurmctld && sinfo
        ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
