#!/usr/bin/env bash
# Runs deploy/docker/Dockerfile's build without Docker, and checks what the
# image would hold. The builder stage's COPY and RUN lines are read from the
# Dockerfile itself and run as they are, in a staging directory holding only
# what those COPY lines copy (and .dockerignore lets through); then the
# binary the runtime stage copies is checked:
#   - it exists and runs as the runtime stage's USER (a non-root uid), with
#     `--version` and with `--check-config` on a sample configuration;
#   - it serves /ping as that user, from a read-only working directory;
#   - its dynamic libraries are glibc-level only (what distroless/cc has);
#   - its size is printed.
#
# The build uses the repository's target/ (CARGO_TARGET_DIR) so a second run
# is incremental; set CARGO_TARGET_DIR to build elsewhere.
#
# Usage: deploy/docker/build.sh        (from anywhere; exit 0 = all good)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dockerfile="$here/Dockerfile"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

fail() { echo "docker-mirror: FAILED: $*" >&2; exit 1; }
say() { echo "docker-mirror: $*" >&2; }

# the build's staging copy sits at a fixed place with the files' times kept
# (cp -p), so an unchanged tree is not rebuilt; the run's files go elsewhere
stage="$CARGO_TARGET_DIR/docker-mirror/src"
rm -rf "$stage" && mkdir -p "$stage"
run=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-docker-mirror.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$run"
}
trap cleanup EXIT

# --- the builder stage, as the Dockerfile says it -------------------------
builder=$(awk '/^FROM .* AS builder$/ {on=1; next} /^FROM / {on=0} on' "$dockerfile")
[ -n "$builder" ] || fail "no 'FROM ... AS builder' stage in $dockerfile"
workdir=$(printf '%s\n' "$builder" | awk '$1=="WORKDIR" {print $2}')
[ -n "$workdir" ] || fail "the builder stage has no WORKDIR"
ran=0
set -f # the lines are split into words, never globbed
while IFS= read -r line; do
  set -- $line
  case "${1:-}" in
    ""|\#*|WORKDIR) ;;
    COPY)
      shift
      args=("$@")
      dest="${args[-1]}"
      unset 'args[-1]'
      for src in "${args[@]}"; do
        [ -e "$root/$src" ] || fail "COPY $src: not in the repository"
        # .dockerignore: '*' then '!name' lines; the source must be let through
        if [ -f "$root/.dockerignore" ] && ! grep -qxE "!${src%/}/?" "$root/.dockerignore"; then
          fail "COPY $src: .dockerignore keeps it out of the build context"
        fi
        case "$dest" in
          */) mkdir -p "$stage/$dest"; cp -pR "$root/$src" "$stage/$dest" ;;
          *) mkdir -p "$stage/$(dirname "$dest")"; cp -pR "$root/$src" "$stage/$dest" ;;
        esac
      done
      ;;
    RUN)
      shift
      cmd="$*"
      say "RUN $cmd (in a staging copy of $workdir)"
      start=$(date +%s)
      (cd "$stage" && bash -euo pipefail -c "$cmd") || fail "RUN $cmd"
      say "built in $(( $(date +%s) - start )) s"
      ran=$((ran + 1))
      ;;
    *) fail "builder stage line not mirrored: $line" ;;
  esac
done <<< "$builder"
set +f
[ "$ran" -gt 0 ] || fail "the builder stage has no RUN line"

# --- what the runtime stage copies and runs as ---------------------------
runtime=$(awk '/^FROM .* AS builder$/ {skip=1; next} /^FROM / {skip=0; on=1} on && !skip' "$dockerfile")
from_builder=$(printf '%s\n' "$runtime" | awk '$1=="COPY" && $2=="--from=builder" {print $3}')
[ -n "$from_builder" ] || fail "the runtime stage copies nothing from the builder"
rel=${from_builder#"$workdir"/}
case "$rel" in
  target/*) bin="$CARGO_TARGET_DIR/${rel#target/}" ;;
  *) bin="$stage/$rel" ;;
esac
[ -x "$bin" ] || fail "$from_builder (here $bin) was not built"
user=$(printf '%s\n' "$runtime" | awk '$1=="USER" {print $2}')
uid=${user%%:*}
gid=${user##*:}
case "$uid" in ''|*[!0-9]*) fail "USER must be a numeric uid (runAsNonRoot checks it), got '$user'" ;; esac
[ "$uid" -ne 0 ] || fail "USER is root"
say "binary $from_builder: $(du -h "$bin" | cut -f1) ($(stat -c %s "$bin") bytes)"

# the libraries it loads: glibc-level ones are all distroless/cc has
libs=$(ldd "$bin" | awk '{print $1}')
say "dynamic libraries: $(echo $libs)"
for l in $libs; do
  case "$l" in
    linux-vdso.so.*|/lib64/ld-linux-*|ld-linux-*|libc.so.*|libm.so.*|libgcc_s.so.*|libpthread.so.*|libdl.so.*|librt.so.*) ;;
    *) fail "links $l, which distroless/cc does not have" ;;
  esac
done

# run it as the image's user: copied to a directory that user can read,
# started from a working directory it cannot write
as_user=()
if [ "$(id -u)" -eq 0 ]; then
  as_user=(setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs)
  runbin="$run/bin/gatehouse"
  mkdir -p "$run/bin" && cp "$bin" "$runbin" && chmod 0755 "$run" "$run/bin" "$runbin"
else
  say "not root: runs as $(id -un), not as uid $uid"
  runbin="$bin"
fi
"${as_user[@]}" "$runbin" --version >"$run/version.txt" 2>&1 || fail "--version: $(cat "$run/version.txt")"
say "--version as uid $uid: $(cat "$run/version.txt")"
if [ ${#as_user[@]} -gt 0 ]; then
  [ "$("${as_user[@]}" id -u)" = "$uid" ] || fail "did not switch to uid $uid"
fi

# a sample configuration, as the image gets it (secrets from the environment)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 41805)
cat >"$run/gatehouse.toml" <<TOML
http_address = "127.0.0.1:$port"
upstream = "http://127.0.0.1:9"
oidc_issuer_url = "http://127.0.0.1:9/realms/main"
client_id = "gatehouse"
redirect_url = "http://127.0.0.1:$port/oauth2/callback"
cookie_secure = false
email_domain = "*"
TOML
chmod 0644 "$run/gatehouse.toml"
secrets=(env -i GATEHOUSE_CLIENT_SECRET=docker-mirror-client-secret
  GATEHOUSE_COOKIE_SECRET=ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI=)
# every static check passes; the probes then find nothing listening (exit 78)
set +e
(cd / && "${secrets[@]}" "${as_user[@]}" "$runbin" --config "$run/gatehouse.toml" --check-config) >"$run/check.txt" 2>&1
code=$?
set -e
grep -q "every setting and its value" "$run/check.txt" && grep -q "probed:" "$run/check.txt" \
  || fail "--check-config (exit $code) did not get to the probes: $(cat "$run/check.txt")"
say "--check-config as uid $uid: the settings pass; probes ran (exit $code, nothing listens here)"

# serves /ping as that user, from / (which it cannot write)
(cd / && exec "${secrets[@]}" "${as_user[@]}" "$runbin" --config "$run/gatehouse.toml") >"$run/serve.txt" 2>&1 &
server_pid=$!
ok=""
for _ in $(seq 1 100); do
  if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
    printf 'GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    status=$(timeout 2 head -n1 <&3 | tr -d '\r' || true)
    exec 3<&-
    case "$status" in "HTTP/1.1 200"*) ok=1; break ;; esac
  fi
  kill -0 "$server_pid" 2>/dev/null || fail "gatehouse exited: $(cat "$run/serve.txt")"
  sleep 0.1
done
[ -n "$ok" ] || fail "GET /ping did not answer 200 within 10 s: $(cat "$run/serve.txt")"
say "GET /ping as uid $uid: 200"
echo "docker-mirror: ok"
