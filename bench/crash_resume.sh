#!/usr/bin/env bash
# Usage: bench/crash_resume.sh BENCH MODE [KILLS] [Q1 FLAGS...]
#
# The crash-and-resume check of shared/bench/WORKLOAD.md: runs
# `BENCH q1 FLAGS --checkpoint-dir .. --checkpoint-interval-ms 200 --output ..`,
# kills it with SIGKILL, restarts it with the same command, KILLS times (default
# 10), lets the last run finish, and checks that the committed output
# (`BENCH check-output`) equals the uninterrupted run exactly: same windows,
# count, sum and digest, no window repeated, no line malformed.
#
# Kills alternate between a random moment (processing) and the phases of a
# checkpoint, hit through the MS_CHECKPOINT_KILL_AT test hook: while workers
# snapshot, between uploads, just before the metadata is written, between
# the metadata and the sinks' commit, and before retention. The hook exists
# only in builds configured with MS_FAULT_INJECTION=ON (the dev, asan and tsan
# presets).
#
# MODE: local   checkpoints in a local folder;
#       s3      checkpoints in S3 at $MS_S3_ENDPOINT (moto_server), RocksDB
#               state with a small budget, so spilled windows go through
#               incremental SST snapshots;
#       rescale each restart uses another --threads (1, 2, 3);
#       dedup   query Q2 (`BENCH dedup`: dedup_by_sequence, then Q1), local,
#               each restart with another --threads.
# A run that finishes before it is killed ends a sequence: the output is
# checked, the folders are wiped and a new sequence starts, until KILLS kills.
# Three such runs in a row fail the script at once (the workload is too small
# for the machine, or the build has no fault injection) instead of looping.
# Exits 0 when every check passed.
set -euo pipefail

bench="$1"
mode="$2"
kills="${3:-10}"
shift $(($# >= 3 ? 3 : 2))
q1_flags=("$@")
if ((${#q1_flags[@]} == 0)); then
  q1_flags=(--seed 42 --meters 100000 --events 2000000)
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/ms-crash.XXXXXX")"
trap 'rm -rf "$work"' EXIT

extra=()
query=q1
case "$mode" in
  local | rescale) ;;
  dedup) query=dedup ;;
  s3)
    : "${MS_S3_ENDPOINT:?MS_S3_ENDPOINT must name a running moto_server}"
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
    extra=(--state rocksdb --state-memory-mb 8)
    ;;
  *)
    echo "crash_resume.sh: unknown mode '$mode' (local, s3, rescale)" >&2
    exit 2
    ;;
esac

field() { # field NAME JSON
  python3 -c 'import json,sys; print(json.loads(sys.argv[2])[sys.argv[1]])' "$1" "$2"
}

expected="$("$bench" "$query" "${q1_flags[@]}" --threads 2)"
echo "uninterrupted: $expected"

sequence=0
killed=0
run=0
failures=0
phases=(time snapshot time upload time metadata time commit time retention)
unkilled=0 # runs in a row that finished before their kill

new_sequence() {
  sequence=$((sequence + 1))
  rm -rf "$work/chk" "$work/out"
  storage=()
  if [[ "$mode" == s3 ]]; then
    storage=(--checkpoint-storage "s3://ms-crash-test/run-$$-$sequence" --s3-endpoint "$MS_S3_ENDPOINT")
  fi
}

check_output() {
  local got
  got="$("$bench" check-output --output "$work/out")"
  local ok=1
  for f in windows total_count sum_wh digest; do
    if [[ "$(field "$f" "$got")" != "$(field "$f" "$expected")" ]]; then ok=0; fi
  done
  [[ "$(field repeated "$got")" == 0 && "$(field malformed "$got")" == 0 ]] || ok=0
  if ((ok)); then
    echo "sequence $sequence: committed output matches ($got)"
  else
    echo "sequence $sequence: MISMATCH: committed $got, expected $expected" >&2
    failures=$((failures + 1))
  fi
}

run_once() { # run_once PHASE -> sets rc
  local phase="$1" threads=2
  if [[ "$mode" == rescale || "$mode" == dedup ]]; then threads=$((run % 3 + 1)); fi
  run=$((run + 1))
  local cmd=("$bench" "$query" "${q1_flags[@]}" "${extra[@]}" --threads "$threads"
    --checkpoint-dir "$work/chk" --checkpoint-interval-ms 200 --output "$work/out" "${storage[@]}")
  if [[ "$phase" == time ]]; then
    "${cmd[@]}" >"$work/run.json" 2>"$work/run.err" &
    local pid=$!
    sleep "0.$((RANDOM % 9 + 1))"
    kill -9 "$pid" 2>/dev/null || true
    rc=0
    wait "$pid" || rc=$?
  else
    rc=0
    MS_CHECKPOINT_KILL_AT="$phase:$((RANDOM % 3 + 1))" "${cmd[@]}" >"$work/run.json" \
      2>"$work/run.err" || rc=$?
  fi
  echo "run $run (threads $threads, kill at $phase): exit $rc"
  if ((rc != 0 && rc != 137)); then
    echo "run $run failed:" >&2
    cat "$work/run.err" >&2
    failures=$((failures + 1))
  fi
}

new_sequence
while ((killed < kills)); do
  run_once "${phases[$((killed % ${#phases[@]}))]}"
  if ((rc == 137)); then
    killed=$((killed + 1))
    unkilled=0
  elif ((rc == 0)); then
    check_output
    new_sequence
    unkilled=$((unkilled + 1))
    if ((unkilled >= 3)); then
      echo "crash_resume.sh: $unkilled runs in a row finished before their kill" \
        "(kill at ${phases[$((killed % ${#phases[@]}))]}): the workload is too small," \
        "or $bench was built without MS_FAULT_INJECTION=ON" >&2
      failures=$((failures + 1))
      break
    fi
  else
    break
  fi
done
# The last sequence: restart until a run finishes.
for _ in 1 2 3; do
  run_once none
  if ((rc == 0)); then
    check_output
    break
  fi
done
if ((rc != 0)); then
  echo "the last run did not finish" >&2
  failures=$((failures + 1))
fi
echo "crash_resume.sh $mode: $killed kills in $run runs over $sequence sequences, $failures failures"
((failures == 0))
