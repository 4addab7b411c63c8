#!/usr/bin/env bash
# Usage: scripts/test.sh
#
# The whole test run, as CI runs it (.ci/run):
#   1. scripts/deps.sh --test (build and test dependencies, idempotent);
#   2. starts redis-server, moto_server and one Kafka broker
#      (scripts/kafka-broker) on free loopback ports and exports
#      MS_REDIS_HOST, MS_REDIS_PORT, MS_S3_ENDPOINT, MS_KAFKA_BROKERS,
#      MS_KAFKA_BROKER_DIR and MS_KAFKA_BROKER_SCRIPT for the e2e tests
#      (stopped again when this script exits, whatever happens);
#   3. the `dev` preset: configure, build, ctest;
#   4. the `asan` preset (ASan + UBSan, library and tests only): configure,
#      build, ctest (labels `slow` and `tools` excluded);
#   5. the `tsan` preset (ThreadSanitizer): configure, build, ctest on the
#      memory backend only (the preset's filter: labels runtime, api, window,
#      core, checkpoint; not slow, e2e or rocksdb);
#   6. scripts/package-test.sh on the dev build (find_package and
#      add_subdirectory consumers).
# A failed step does not hide the others: the asan, tsan and package steps still run
# after a dev failure (except what depends on a failed build). Exits non-zero
# when any step failed, after a summary. Works from any directory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

work="$(mktemp -d "${TMPDIR:-/tmp}/meterstream-test.XXXXXX")"
redis_pid=""
moto_pid=""
kafka_dir=""

stop_servers() {
  # The chaos tests may have killed or restarted the broker: stop whatever
  # runs on its folder now (nothing when it is down).
  if [[ -n "$kafka_dir" ]]; then
    scripts/kafka-broker stop "$kafka_dir" || true
    kafka_dir=""
  fi
  local pid
  for pid in "$redis_pid" "$moto_pid"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  redis_pid=""
  moto_pid=""
}

cleanup() {
  stop_servers
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- Servers for the e2e tests ---------------------------------------------

# A port that was free a moment ago: bind port 0 on loopback and print it.
free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# wait_for NAME SECONDS COMMAND...: retries COMMAND until it succeeds.
wait_for() {
  local name="$1" seconds="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "test.sh: $name did not answer within ${seconds}s; its log:" >&2
      cat "$work/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

redis_answers() {
  [[ "$(redis-cli -h 127.0.0.1 -p "$MS_REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
}

moto_answers() {
  curl -fsS -o /dev/null --max-time 2 "$MS_S3_ENDPOINT/"
}

start_servers() {
  local redis_port moto_port
  redis_port="$(free_port)"
  moto_port="$(free_port)"
  while [[ "$moto_port" == "$redis_port" ]]; do moto_port="$(free_port)"; done

  export MS_REDIS_HOST=127.0.0.1
  export MS_REDIS_PORT="$redis_port"
  export MS_S3_ENDPOINT="http://127.0.0.1:$moto_port"

  mkdir -p "$work/redis"
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --daemonize no --dir "$work/redis" >"$work/redis.log" 2>&1 &
  redis_pid=$!

  if command -v moto_server >/dev/null 2>&1; then
    moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
  else
    python3 -m moto.server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
  fi
  moto_pid=$!

  # The Kafka broker starts while the others come up; it prints its
  # bootstrap address once it answers (it waits itself, ~5 s).
  kafka_dir="$work/kafka"
  export MS_KAFKA_BROKER_DIR="$kafka_dir"
  export MS_KAFKA_BROKER_SCRIPT="$root/scripts/kafka-broker"
  local brokers kafka_ok=1
  if brokers="$(scripts/kafka-broker start "$kafka_dir")"; then
    export MS_KAFKA_BROKERS="$brokers"
  else
    echo "test.sh: the Kafka broker did not start (see above)" >&2
    kafka_ok=0
  fi

  wait_for redis 30 redis_answers || return 1
  wait_for moto 60 moto_answers || return 1
  ((kafka_ok)) || return 1
  echo "test.sh: redis-server on $MS_REDIS_HOST:$MS_REDIS_PORT (pid $redis_pid)," \
    "moto_server on $MS_S3_ENDPOINT (pid $moto_pid)," \
    "Kafka on $MS_KAFKA_BROKERS ($MS_KAFKA_BROKER_DIR)"
}

# ---- Steps ------------------------------------------------------------------

summary=()
failures=0
tests_passed=0
tests_failed=0

# step NAME COMMAND...: runs one step, records PASS/FAIL, returns its status.
step() {
  local name="$1"
  shift
  echo
  echo "==== test.sh: $name: $*"
  local start=$SECONDS
  if "$@"; then
    summary+=("PASS  $name ($((SECONDS - start))s)")
    return 0
  else
    local rc=$?
    summary+=("FAIL  $name (exit $rc, $((SECONDS - start))s)")
    failures=$((failures + 1))
    return "$rc"
  fi
}

# run_ctest PRESET: ctest with the preset, and adds its counts to the totals.
run_ctest() {
  local preset="$1" log="$work/ctest-$1.log" rc=0
  ctest --preset "$preset" 2>&1 | tee "$log" || rc=$?
  local line
  line="$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)"
  if [[ "$line" =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
    tests_failed=$((tests_failed + BASH_REMATCH[1]))
    tests_passed=$((tests_passed + BASH_REMATCH[2] - BASH_REMATCH[1]))
  fi
  return "$rc"
}

preset() {
  local name="$1"
  if step "$name: configure" cmake --preset "$name" &&
    step "$name: build" cmake --build --preset "$name"; then
    step "$name: ctest" run_ctest "$name" || true
    return 0
  fi
  return 1
}

step "deps" scripts/deps.sh --test || true
step "start redis-server, moto_server and Kafka" start_servers || true

dev_built=0
preset dev && dev_built=1
preset asan || true
preset tsan || true
if ((dev_built)); then
  step "package test (dev build)" scripts/package-test.sh "$root/build/dev" || true
else
  summary+=("SKIP  package test (the dev build failed)")
  failures=$((failures + 1))
fi

stop_servers

echo
echo "==== test.sh: summary"
printf '  %s\n' "${summary[@]}"
if ((failures)); then
  echo "test.sh: FAILED ($failures step(s) failed)"
else
  echo "test.sh: all steps passed"
fi
echo "ctest: $tests_passed passed, $tests_failed failed"
((failures == 0))
