#!/usr/bin/env bash
# Fetch, start, stop and inspect the Elasticsearch integ-test server used by Furui's tests and CI.
#
#   scripts/es.sh fetch | start | stop | restart | status | logs | url
#
# `start` prints the server URL (and nothing else) on stdout; everything else goes to stderr.
# Recipe and background: shared ELASTICSEARCH.md section 4; usage: docs/elasticsearch.md.
#
# Environment (all optional):
#   ES_VERSION        integ-test-zip version                      (default 8.19.14)
#   ES_PORT           HTTP port on 127.0.0.1                      (default 9200)
#   ES_USER           system user the server runs as under root   (default furui-es)
#   ES_RUN_DIR        unpacked home, data, logs, pid file         (default /var/tmp/furui-es-$ES_VERSION)
#   ES_JAVA_HOME      JDK to use; else 17/21 for 8.x, 25/21 for 9.x, found under /usr/lib/jvm
#   ES_JAVA_OPTS      JVM options                                 (default -Xms512m -Xmx512m)
#   ES_KEEP_DATA=1    keep $ES_RUN_DIR/data between starts (a dev backend); tests never set it
#   ES_START_TIMEOUT  seconds to wait for yellow health           (default 120)
#   ES_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 30)
#   ES_ZIP_SHA256     expected SHA-256 of the zip (overrides the pinned table below)
#   ES_ALLOW_UNVERIFIED=1  accept a zip with neither a pinned SHA-256 nor Maven checksums
#   FURUI_CACHE_DIR   cache root; the zip lives in $FURUI_CACHE_DIR/elasticsearch (default .cache)
#   M2_REPO           Maven local repository                      (default ~/.m2/repository)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ES_VERSION=${ES_VERSION:-8.19.14}
ES_PORT=${ES_PORT:-9200}
ES_USER=${ES_USER:-furui-es}
ES_START_TIMEOUT=${ES_START_TIMEOUT:-120}
ES_STOP_TIMEOUT=${ES_STOP_TIMEOUT:-30}
CACHE=${FURUI_CACHE_DIR:-$ROOT/.cache}/elasticsearch # git-ignored; keeps the zip between runs
RUN=${ES_RUN_DIR:-/var/tmp/furui-es-$ES_VERSION}      # outside any 0700 home, so ES_USER can enter it
ZIP=$CACHE/elasticsearch-$ES_VERSION.zip
ES_HOME=$RUN/elasticsearch-$ES_VERSION
PIDFILE=$RUN/es.pid
LAUNCH_LOG=$RUN/launch.log
URL=http://127.0.0.1:$ES_PORT
M2_DIR=${M2_REPO:-$HOME/.m2/repository}/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION

die() { echo "es.sh: $*" >&2; exit 1; }
note() { echo "es.sh: $*" >&2; }

case $RUN in /?*) ;; *) die "ES_RUN_DIR must be an absolute path other than /, got '$RUN'" ;; esac
case $ES_PORT in '' | *[!0-9]*) die "ES_PORT must be a number, got '$ES_PORT'" ;; esac

# SHA-256 of zips fetched from Maven Central and checked by hand. Central publishes no .sha1/.md5 for
# these versions, so `mvn -C` cannot verify them; this table makes a fetch fail closed instead.
pinned_sha256() {
  case $1 in
    8.19.14) echo 71c377930b32869b1ba158327e05c886995d35d427cac951be12b67a6595c1bb ;;
    9.5.4) echo d9b0c28e08e499f6510b52ad66ec4bf9cdceab97cc28b3456989b8744b896934 ;;
    *) echo "" ;;
  esac
}
EXPECTED_SHA256=${ES_ZIP_SHA256:-$(pinned_sha256 "$ES_VERSION")}

# Is the cached zip complete (CRC of every entry) and, when a hash is known, the expected one?
zip_ok() {
  [ -f "$ZIP" ] && unzip -tq "$ZIP" >/dev/null 2>&1 || return 1
  [ -z "$EXPECTED_SHA256" ] || [ "$(sha256sum "$ZIP" | cut -d' ' -f1)" = "$EXPECTED_SHA256" ]
}

# Run `mvn dependency:copy` for the zip (extra mvn flags in "$@"); its output goes to stderr and
# to $MVN_LOG, so that callers can tell "not on Central" from "no checksum files on Central".
MVN_LOG=
mvn_copy() {
  command -v mvn >/dev/null || die "mvn not found: apt-get install -y maven"
  if [ -z "$MVN_LOG" ]; then
    MVN_LOG=$(mktemp)
    trap 'rm -f "$MVN_LOG"' EXIT
  fi
  mvn -B -ntp -q -Dstyle.color=never ${M2_REPO:+"-Dmaven.repo.local=$M2_REPO"} "$@" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
    -DoutputDirectory="$CACHE" 2>&1 | tee "$MVN_LOG" >&2
}
mvn_said() { grep -q "$1" "$MVN_LOG"; }
not_found() {
  die "integ-test-zip $ES_VERSION is not on Maven Central (or it is unreachable): see the mvn output above"
}

fetch() {
  zip_ok && return 0
  command -v unzip >/dev/null || die "unzip not found: apt-get install -y unzip"
  mkdir -p "$CACHE"
  rm -f "$ZIP"
  note "fetching integ-test-zip $ES_VERSION from Maven Central"
  if [ -n "$EXPECTED_SHA256" ]; then
    mvn_copy || not_found
  elif ! mvn_copy -C; then # no pinned hash: let Maven's checksums decide, strictly
    mvn_said "no checksums available" || not_found
    [ "${ES_ALLOW_UNVERIFIED:-0}" = 1 ] ||
      die "Maven Central has integ-test-zip $ES_VERSION but no checksum files for it; pin its hash with" \
        "ES_ZIP_SHA256=<sha256> (or accept it unverified with ES_ALLOW_UNVERIFIED=1)"
    note "WARNING: fetching $ES_VERSION without any checksum (ES_ALLOW_UNVERIFIED=1)"
    mvn_copy || not_found
  fi
  zip_ok && return 0
  # A corrupt copy in ~/.m2 would be copied again and again: drop it and download once more.
  note "zip failed its integrity check; removing $M2_DIR and downloading again"
  rm -rf "$M2_DIR" "$ZIP"
  mvn_copy || not_found
  zip_ok || die "$ZIP fails its integrity check (unzip -t / SHA-256 $EXPECTED_SHA256)"
}

# First JDK under Debian's JVM folder whose major version is one of "$@".
jdk_home() {
  local m j
  for m in "$@"; do
    for j in /usr/lib/jvm/*/bin/java; do
      [ -x "$j" ] || continue
      if "$j" -version 2>&1 | grep -q "version \"${m}[.\"]"; then
        dirname "$(dirname "$j")"
        return 0
      fi
    done
  done
  return 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Pids of every JVM (launcher or server) whose home is this run's ES_HOME: exact match on one argv
# entry, so a server of another version or ES_RUN_DIR is never touched. The pattern comes from
# a file so that grep's own argv (also under /proc) cannot match it.
es_pids() {
  { grep -lzxF -f <(printf '%s\n' "-Des.path.home=$ES_HOME") /proc/[0-9]*/cmdline 2>/dev/null || true; } |
    sed -e 's#^/proc/##' -e 's#/cmdline$##'
}

# Is pid $1 one of ours? A stale pid file may name a recycled pid.
is_our_pid() {
  grep -qzxF -f <(printf '%s\n' "-Des.path.home=$ES_HOME") "/proc/$1/cmdline" 2>/dev/null
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$ES_PORT") 2>/dev/null; }

healthy() { curl -fsS -m 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; }

# Tail of a log ($1: launch = the launcher's console, which holds the startup; server = the node's
# log), $2 lines, each cut to 500 characters (the node logs its whole JVM command line).
show_logs() {
  local f=$RUN/logs/furui-test.log
  [ "$1" = launch ] && f=$LAUNCH_LOG
  if [ -s "$f" ]; then
    echo "--- tail of $f" >&2
    tail -n "$2" "$f" | cut -c1-500 >&2
  fi
  return 0
}

# Send SIGTERM to our pids, wait, then SIGKILL what is left. Returns 1 if something survives.
stop() {
  local pids pid waited=0
  # The pid file has no trailing newline: read it with `read` so it cannot glue onto the next pid.
  if [ -f "$PIDFILE" ]; then read -r pid <"$PIDFILE" || true; fi
  pids=$( { echo "${pid:-}"; es_pids; } | sort -u)
  for pid in $pids; do
    is_our_pid "$pid" || continue
    kill -TERM "$pid" 2>/dev/null || true
  done
  while [ -n "$(es_pids)" ] && [ "$waited" -lt "$ES_STOP_TIMEOUT" ]; do
    sleep 1
    waited=$((waited + 1))
  done
  pids=$(es_pids)
  if [ -n "$pids" ]; then
    note "pids $(echo "$pids" | paste -sd' ') still running after ${ES_STOP_TIMEOUT} s; sending SIGKILL"
    # shellcheck disable=SC2086 # word splitting of the pid list is intended
    kill -KILL $pids 2>/dev/null || true
    sleep 2
  fi
  rm -f "$PIDFILE"
  pids=$(es_pids)
  [ -z "$pids" ] || die "could not stop pids $pids"
  return 0
}

start() {
  local want java_home pids waited=0
  pids=$(es_pids)
  if [ -n "$pids" ]; then
    die "Elasticsearch $ES_VERSION from $ES_HOME is already running (pids $(echo "$pids" | paste -sd' '))" \
      "at $URL; use 'scripts/es.sh stop' or 'scripts/es.sh restart'"
  fi
  if [ -f "$PIDFILE" ]; then
    note "removing stale pid file $PIDFILE (pid $(cat "$PIDFILE") is gone)"
    rm -f "$PIDFILE"
  fi
  if port_busy; then
    command -v ss >/dev/null && ss -Hltnp "sport = :$ES_PORT" >&2
    die "port $ES_PORT on 127.0.0.1 is already in use by another process (another Elasticsearch" \
      "version or checkout?); stop it, or pick another port with ES_PORT=<port> (and pass the URL" \
      "to pytest via FURUI_TEST_ES_URL if you want to reuse it)"
  fi
  command -v curl >/dev/null || die "curl not found: apt-get install -y curl"
  fetch

  case $ES_VERSION in
    8.*) want="17 21" ;; # 8.x needs 17+; stay off JDK 24+ (ELASTICSEARCH.md section 3)
    9.*) want="25 21" ;; # 9.x needs 21+; 25 is what the build machines carry
    *) die "unsupported ES_VERSION $ES_VERSION (8.x or 9.x)" ;;
  esac
  if [ -n "${ES_JAVA_HOME:-}" ]; then
    java_home=$ES_JAVA_HOME
  else
    # shellcheck disable=SC2086 # $want is a list of majors
    java_home=$(jdk_home $want) || die "no JDK with major version in {$want} under /usr/lib/jvm; set ES_JAVA_HOME"
  fi
  [ -x "$java_home/bin/java" ] || die "ES_JAVA_HOME=$java_home has no bin/java"

  if is_root && ! id -u "$ES_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$ES_USER"
  fi

  rm -rf "$ES_HOME" "$RUN/logs" "$RUN/tmp" "$LAUNCH_LOG"
  [ "${ES_KEEP_DATA:-0}" = 1 ] || rm -rf "$RUN/data"
  mkdir -p "$RUN/data" "$RUN/logs" "$RUN/tmp"
  unzip -q "$ZIP" -d "$RUN"
  chmod +x "$ES_HOME"/bin/*
  cat >"$ES_HOME/config/elasticsearch.yml" <<YML
cluster.name: furui-test
node.name: furui-test-node
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: 0
path.data: $RUN/data
path.logs: $RUN/logs
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
node.store.allow_mmap: false
YML
  if is_root; then chown -R "$ES_USER": "$RUN"; fi

  note "starting Elasticsearch $ES_VERSION on $URL with $java_home"
  local -a launch=(env ES_JAVA_HOME="$java_home" ES_JAVA_OPTS="${ES_JAVA_OPTS:--Xms512m -Xmx512m}"
    ES_TMPDIR="$RUN/tmp" "$ES_HOME/bin/elasticsearch" -d -p "$PIDFILE")
  if is_root; then launch=(runuser -u "$ES_USER" -- "${launch[@]}"); fi
  # With -d the launcher returns once the node has started, so it is what the timeout bounds. Its
  # output goes to a file so that a caller capturing stdout is not held open by the daemonised
  # server, and fd 9 (the start lock) is not inherited.
  local rc=0
  (cd "$RUN" && timeout --kill-after=10 "$ES_START_TIMEOUT" "${launch[@]}" \
    </dev/null >"$LAUNCH_LOG" 2>&1 9>&-) || rc=$?
  if [ "$rc" -ne 0 ]; then
    if [ "$rc" -eq 124 ]; then note "not started after ${ES_START_TIMEOUT} s:"; else
      note "the Elasticsearch launcher failed (exit $rc):"; fi
    show_logs launch 40
    stop || true
    exit 1
  fi
  while [ "$waited" -lt "$ES_START_TIMEOUT" ]; do
    if healthy; then
      echo "$URL"
      return 0
    fi
    if [ -f "$PIDFILE" ] && [ -z "$(es_pids)" ]; then
      note "Elasticsearch exited during startup:"
      show_logs server 40
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  note "not ready after ${ES_START_TIMEOUT} s:"
  show_logs server 40
  stop || true
  exit 1
}

status() {
  local pids
  pids=$(es_pids)
  echo "version $ES_VERSION, home $ES_HOME, pids: ${pids:-none}" | tr '\n' ' ' >&2
  echo >&2
  curl -fsS -m 5 "$URL/_cluster/health?pretty" || die "no answer from $URL"
}

# One start or stop at a time per run dir (fd 9 is closed for the daemonised server).
with_lock() {
  mkdir -p "$(dirname "$RUN")"
  exec 9>"$RUN.lock"
  flock -w "$((ES_START_TIMEOUT + ES_STOP_TIMEOUT + 600))" 9 || die "timed out waiting for $RUN.lock"
  "$@"
}

case ${1:-} in
  fetch) fetch ;;
  start) with_lock start ;;
  stop) with_lock stop ;;
  restart) with_lock stop && with_lock start ;;
  status) status ;;
  logs) show_logs server "${2:-100}" ;;
  url) echo "$URL" ;;
  *)
    echo "usage: $0 fetch|start|stop|restart|status|logs [N]|url" >&2
    exit 2
    ;;
esac
