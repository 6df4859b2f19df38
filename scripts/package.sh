#!/usr/bin/env bash
# Builds Herald's Debian package and checks it the way an operator would
# meet it: the files it installs, its conffile, its systemd unit (verified
# and scored by systemd-analyze), that the packaged configuration starts a
# hub as it is, that the man page covers every command and option of the
# binary, and (as root) that dpkg installs, upgrades, removes and purges it.
#
#   bash scripts/package.sh            package target/debug/herald (built if
#                                      missing) without another build: quick
#   bash scripts/package.sh --release  `cargo deb -p herald`: the release
#                                      build a real package is made from
#
# The .deb is left in target/debian/. Installs cargo-deb if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

mode=quick
case "${1:-}" in
  "") ;;
  --release) mode=release ;;
  *) echo "usage: $0 [--release]" >&2; exit 2 ;;
esac

fail() { echo "package.sh: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
started=$SECONDS

for tool in dpkg-deb cargo; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is required"
done

if ! cargo deb --version >/dev/null 2>&1; then
  step "installing cargo-deb (cargo install cargo-deb --locked)"
  # The flags used below (--no-build, --no-dbgsym, ...) are cargo-deb 3's.
  cargo install cargo-deb --locked --quiet --version '^3'
fi
echo "$(cargo deb --version)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-package.XXXXXX")
hub_pid=""
cleanup() {
  if [ -n "$hub_pid" ]; then
    # The hub itself (its pid file), then strace or sh if still there.
    [ -f "$tmp/hub.pid" ] && kill "$(cat "$tmp/hub.pid")" 2>/dev/null
    kill "$hub_pid" 2>/dev/null
    wait "$hub_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---------------------------------------------------------------- build
out="$repo/target/debian"
mkdir -p "$out"
rm -f "$out"/herald_*.deb "$out"/herald-dbgsym_*.ddeb
if [ "$mode" = release ]; then
  step "cargo deb -p herald (release build)"
  cargo deb -p herald --locked -o "$out/" 2>"$tmp/cargo-deb.err" || { cat "$tmp/cargo-deb.err" >&2; fail "cargo deb"; }
else
  bin="$repo/target/debug/herald"
  if [ ! -x "$bin" ]; then
    step "cargo build -p herald --bin herald"
    cargo build -p herald --bin herald
  fi
  step "cargo deb -p herald --no-build (packaging $bin)"
  # cargo-deb packages `<target dir>/release/herald`. Rather than building
  # again in release mode (many minutes on a small machine), give it a
  # target directory of its own whose release/herald is the debug binary
  # already built; --strip makes the copy a reasonable size.
  mkdir -p "$tmp/target/release"
  cp "$bin" "$tmp/target/release/herald"
  CARGO_TARGET_DIR="$tmp/target" cargo deb -p herald --no-build --fast --strip \
    --no-dbgsym --no-separate-debug-symbols -o "$out/" 2>"$tmp/cargo-deb.err" \
    || { cat "$tmp/cargo-deb.err" >&2; fail "cargo deb"; }
fi
# A missing asset, unit or license shows up as a warning, not an error.
if grep -qi "warning" "$tmp/cargo-deb.err"; then
  cat "$tmp/cargo-deb.err" >&2
  fail "cargo deb printed warnings"
fi
deb=$(ls "$out"/herald_*.deb)
echo "$deb ($(du -h "$deb" | cut -f1))"

# ---------------------------------------------------------------- inspect
step "dpkg-deb --info / --contents"
dpkg-deb --info "$deb" > "$tmp/info"
dpkg-deb --contents "$deb" > "$tmp/contents"
[ "$(dpkg-deb -f "$deb" Package)" = herald ] || fail "Package is not herald"
version=$(dpkg-deb -f "$deb" Version)
upstream=${version%-*}
grep -q '^ Depends: .*libc6' "$tmp/info" || fail "Depends does not name libc6: $(grep Depends "$tmp/info")"
for path in \
  ./usr/bin/herald \
  ./usr/lib/systemd/system/herald.service \
  ./etc/herald/herald.toml \
  ./usr/share/man/man1/herald.1.gz \
  ./usr/share/doc/herald/copyright \
  ./usr/share/doc/herald/README.md \
  ./usr/share/doc/herald/install.md \
  ./usr/share/doc/herald/configuration.md; do
  grep -q " $path\$" "$tmp/contents" || fail "$path is not in the package"
done
for doc in docs/*.md; do
  grep -q " ./usr/share/doc/herald/$(basename "$doc")\$" "$tmp/contents" || fail "$doc is not in the package"
done
grep -q -- '-rwxr-xr-x root/root .* ./usr/bin/herald$' "$tmp/contents" \
  || grep -q -- '-rwxr-xr-x 0/0 .* ./usr/bin/herald$' "$tmp/contents" || fail "/usr/bin/herald is not mode 0755 root"
dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$tmp" ./conffiles ./postinst ./prerm ./postrm \
  || fail "the control archive lacks conffiles or maintainer scripts"
[ "$(cat "$tmp/conffiles")" = /etc/herald/herald.toml ] || fail "conffiles is not exactly /etc/herald/herald.toml: $(cat "$tmp/conffiles")"
grep -q 'deb-systemd-helper enable herald.service' "$tmp/postinst" || fail "postinst does not enable herald.service"
grep -q 'deb-systemd-invoke $_dh_action herald.service' "$tmp/postinst" || fail "postinst does not (re)start herald.service"
grep -q 'deb-systemd-invoke stop herald.service' "$tmp/prerm" || fail "prerm does not stop herald.service"

root="$tmp/root"
dpkg-deb -x "$deb" "$root"
hb="$root/usr/bin/herald"
got=$("$hb" --version | head -n1)
[ "$got" = "herald $upstream" ] || fail "--version says '$got', the package is $version"
echo "$got (package $version)"

# ---------------------------------------------------------------- systemd
step "the unit's sandbox"
unit="$root/usr/lib/systemd/system/herald.service"
# The settings docs/install.md promises, each of which the exposure score
# alone would let slip (running as root scores only 0.4 worse).
for setting in \
  'ExecStart=/usr/bin/herald serve --config /etc/herald/herald.toml' \
  'DynamicUser=yes' 'StateDirectory=herald' 'ProtectSystem=strict' 'ProtectHome=yes' \
  'PrivateTmp=yes' 'PrivateDevices=yes' 'NoNewPrivileges=yes' 'CapabilityBoundingSet=' \
  'AmbientCapabilities=' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
  'SystemCallFilter=@system-service' 'MemoryDenyWriteExecute=yes' 'LimitNOFILE=65536' \
  'Restart=on-failure' 'RestartPreventExitStatus=2' 'TimeoutStopSec=30s'; do
  grep -qxF -- "$setting" "$unit" || fail "herald.service lacks the line $setting"
done
if grep -Eq '^(User|Group|ExecReload|AmbientCapabilities=.+|CapabilityBoundingSet=.+)' "$unit"; then
  fail "herald.service names a fixed user, a reload or a capability"
fi
echo "the sandbox settings are in place"

if command -v systemd-analyze >/dev/null 2>&1; then
  step "systemd-analyze verify / security (offline, --root of the extracted package)"
  # The unit's dependencies (multi-user.target, network-online.target, ...)
  # come from this machine's systemd; the unit, its ExecStart binary and
  # its man page from the package.
  units=/usr/lib/systemd/system
  [ -d "$units" ] || units=/lib/systemd/system
  mkdir -p "$root/usr/lib/systemd/system"
  for u in "$units"/*; do
    [ -e "$root/usr/lib/systemd/system/$(basename "$u")" ] || cp -a "$u" "$root/usr/lib/systemd/system/"
  done
  if ! MANPATH="$root/usr/share/man" systemd-analyze verify --root="$root" herald.service >"$tmp/verify" 2>&1; then
    cat "$tmp/verify" >&2
    fail "systemd-analyze verify"
  fi
  # Unknown or misspelt settings are only warnings: fail on them too.
  if grep -i 'herald' "$tmp/verify" >&2; then fail "systemd-analyze verify warned about the unit"; fi
  # Exposure is scored 0 (best) to 10; the unit scores 1.1 with systemd
  # 252. Fail past 1.5 (other systemd versions score a little differently).
  if ! systemd-analyze security --offline=true --root="$root" --threshold=15 herald.service >"$tmp/security" 2>&1; then
    cat "$tmp/security" >&2
    fail "systemd-analyze security: the unit's exposure is above 1.5"
  fi
  grep 'Overall exposure level' "$tmp/security"
else
  echo "systemd-analyze not found: the unit is not verified"
fi

# ---------------------------------------------------------------- conffile
step "the packaged herald.toml starts a hub as it is"
conf="$root/etc/herald/herald.toml"
grep -q '^listen = "127\.0\.0\.1:' "$conf" || fail "herald.toml must listen on loopback by default"
grep -q '^data_dir = "/var/lib/herald"$' "$conf" || fail "herald.toml must keep its data in /var/lib/herald"
if grep -Eq '^(jwt_secret|session_hash_key) *=' "$conf"; then fail "herald.toml must not ship a secret"; fi
# Every key the comments suggest is a documented key (a misspelt one would
# stop the hub when uncommented).
for key in $(sed -nE 's/^# ?([a-z_0-9]+) = .*/\1/p' "$conf" | sort -u); do
  grep -qE "\`$key\`|^$key = " docs/configuration.md || fail "herald.toml suggests \`$key\`, which docs/configuration.md does not document"
done
# Its own listen address and data dir are overridden by flags (which win
# over the file): port 0 and a scratch directory. The environment is
# emptied so that no HERALD_* variable of this shell changes the result.
data="$tmp/data"
clean_env=(env -i "PATH=$PATH" "HOME=$tmp" NO_COLOR=1)
# Under strace when it can trace here, to hold the hub's system calls, memory
# mappings and sockets against the unit's filters afterwards. `sh` writes
# its pid and execs the hub, so that pid is the hub's.
tracer=()
if command -v strace >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1 \
  && strace -f -qq -o /dev/null true >/dev/null 2>&1; then
  tracer=(strace -f -qq -o "$tmp/strace")
fi
"${clean_env[@]}" "${tracer[@]}" sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$tmp/hub.pid" \
  "$hb" serve --config "$conf" --listen 127.0.0.1:0 --data-dir "$data" >"$tmp/hub.out" 2>"$tmp/hub.err" &
hub_pid=$!
url=""
for _ in $(seq 1 600); do
  url=$(sed -n 's/^herald listening on \(http:\/\/[^ ]*\)$/\1/p' "$tmp/hub.out")
  [ -n "$url" ] && break
  kill -0 "$hub_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  cat "$tmp/hub.out" "$tmp/hub.err" >&2
  fail "herald serve --config herald.toml did not print 'herald listening on'"
fi
echo "hub at $url"
[ -f "$data/jwt_secret" ] || fail "no jwt_secret generated in the data dir"
[ "$(stat -c %a "$data/jwt_secret")" = 600 ] || fail "jwt_secret is not mode 0600"
[ -f "$data/herald.redb" ] || fail "the embedded store was not created in the data dir"
admin=$("${clean_env[@]}" "$hb" token --config "$conf" --data-dir "$data" --sub root --admin \
  --subscribe demo --publish demo --ttl 120) || fail "herald token --config herald.toml"
health=$("$hb" status --url "$url" --token "$admin" --json) \
  || fail "herald status with a token minted by herald token --config herald.toml"
case "$health" in *'"ready":true'*) ;; *) fail "herald status does not report the hub ready: $health" ;; esac
# A publish, and a stream that receives it from history, so that the trace
# covers the store's writes and a stream's path too.
"$hb" publish --url "$url" --token "$admin" --topic demo --data packaged >/dev/null || fail "herald publish"
if command -v curl >/dev/null 2>&1; then
  got=$(curl -sN --max-time 5 -H "Authorization: Bearer $admin" -H 'Last-Event-ID: 0' "$url/v1/events?topic=demo" || true)
  case "$got" in *'data: packaged'*) ;; *) fail "the stream did not deliver the published event: $got" ;; esac
fi
kill -TERM "$(cat "$tmp/hub.pid")"
code=0
wait "$hub_pid" || code=$?
hub_pid=""
[ "$code" = 0 ] || { cat "$tmp/hub.err" >&2; fail "SIGTERM: the hub exited with $code, not 0 (systemd would count a failure)"; }
grep -q 'herald stopped' "$tmp/hub.err" || fail "SIGTERM: no graceful 'herald stopped'"
if grep -q $'\e' "$tmp/hub.err"; then fail "with NO_COLOR=1 the log still has escape codes (they clutter the journal)"; fi
echo "started, served herald status, a publish and a stream, stopped on SIGTERM with exit 0"

if [ ${#tracer[@]} -gt 0 ]; then
  step "the hub's system calls, mappings and sockets fit the unit's filters"
  # SystemCallFilter=@system-service minus ~@privileged @resources, each
  # group expanded (groups name other groups).
  systemd-analyze syscall-filter >"$tmp/groups" 2>/dev/null
  allowed_calls() {
    awk -v want="$1" '
      /^@/ { g = $1; next }
      g != "" && NF && $1 !~ /^#/ { members[g] = members[g] " " $1 }
      END {
        pending = want
        while (pending != "") {
          n = split(pending, names, " ")
          pending = ""
          for (i = 1; i <= n; i++) {
            if (substr(names[i], 1, 1) != "@") { print names[i] }
            else if (!(names[i] in seen)) { seen[names[i]] = 1; pending = pending " " members[names[i]] }
          }
        }
      }
    ' "$tmp/groups" | sort -u
  }
  allowed_calls "@system-service" >"$tmp/allowed"
  allowed_calls "@privileged @resources" >"$tmp/denied"
  [ "$(wc -l <"$tmp/allowed")" -gt 100 ] || fail "could not read systemd's @system-service group"
  # From the hub's own start on (before it, `sh` wrote the pid file).
  awk -v exe="execve(\"$hb\"" 'index($0, exe) { on = 1 } on' "$tmp/strace" >"$tmp/trace"
  sed -nE 's/^[0-9]+ +([a-z_0-9]+)\(.*/\1/p' "$tmp/trace" | sort -u >"$tmp/used"
  [ "$(wc -l <"$tmp/used")" -gt 20 ] || fail "the trace holds too few system calls to mean anything"
  outside=$(comm -23 "$tmp/used" "$tmp/allowed" | tr '\n' ' ')
  [ -z "$outside" ] || fail "the hub calls $outside, outside SystemCallFilter=@system-service"
  refused=$(comm -12 "$tmp/used" "$tmp/denied" | tr '\n' ' ')
  [ -z "$refused" ] || fail "the hub calls $refused, which SystemCallFilter=~@privileged @resources refuses"
  if grep -E '(mmap|mprotect|pkey_mprotect)\(' "$tmp/trace" | grep -E 'PROT_[A-Z_|]*WRITE' | grep -qE 'PROT_[A-Z_|]*EXEC'; then
    fail "the hub maps memory writable and executable, which MemoryDenyWriteExecute=yes refuses"
  fi
  # ProtectSystem=strict leaves the hub only its StateDirectory to write in,
  # and ProcSubset=pid only its own /proc entries to read.
  written=$(grep -E '^[0-9]+ +(open|openat|creat|mkdir|mkdirat|rename|renameat2?|unlink|unlinkat)\(' "$tmp/trace" \
    | grep -E 'O_WRONLY|O_RDWR|O_CREAT|creat\(|mkdir|rename|unlink' \
    | grep -oE '"[^"]*"' | tr -d '"' | grep -v "^$data\(/\|\$\)" | sort -u | tr '\n' ' ' || true)
  [ -z "$written" ] || fail "the hub writes outside its data dir: $written"
  proc=$(grep -oE '"/proc/[^"]*"' "$tmp/trace" | tr -d '"' | grep -vE '^/proc/(self|thread-self|[0-9]+)(/|$)' | sort -u | tr '\n' ' ' || true)
  [ -z "$proc" ] || fail "the hub reads $proc, hidden by ProcSubset=pid"
  families=$(sed -nE 's/^[0-9]+ +socket(pair)?\((AF_[A-Z0-9]+).*/\2/p' "$tmp/trace" | sort -u | tr '\n' ' ')
  for family in $families; do
    case "$family" in AF_INET | AF_INET6 | AF_UNIX) ;; *) fail "the hub opens an $family socket, outside RestrictAddressFamilies" ;; esac
  done
  echo "$(wc -l <"$tmp/used") distinct system calls, all allowed; no writable+executable mapping; writes in the data dir only; sockets: $families"
fi

# ---------------------------------------------------------------- man page
step "herald(1) covers every command and option"
man_src="$tmp/herald.1"
gzip -dc "$root/usr/share/man/man1/herald.1.gz" >"$man_src"
if command -v groff >/dev/null 2>&1; then
  warnings=$(groff -man -ww -z "$man_src" 2>&1) || fail "groff cannot format herald.1"
  [ -z "$warnings" ] || fail "groff warns about herald.1: $warnings"
fi
# Roff writes a hyphen in an option as \-.
man_text=$(sed 's/\\-/-/g' "$man_src")
# The command names listed under "Commands:" in a --help text.
commands_of() { awk '/^Commands:/{on=1; next} on && /^$/{exit} on && /^  [a-z]/{print $1}'; }
# Long and short options in a --help text.
options_of() { grep -oE '(^|[ ,])--?[a-zA-Z][a-z-]*' | sed 's/^[ ,]*//' | sort -u; }
check_options() { # $1: label, stdin: a --help text
  for opt in $(options_of); do
    grep -qE -- "(^|[ \"(])$opt([ ,\")]|$)" <<<"$man_text" || fail "herald.1 does not mention $opt of $1"
  done
}
# The headings of the man page's entries: the lines that follow `.TP`.
entries=$(awk 'prev == ".TP" {print} {prev = $0}' <<<"$man_text")
top=$("$hb" --help)
check_options "herald" <<<"$top"
count=0
for cmd in $(commands_of <<<"$top"); do
  grep -qE "^\.BI? \"?$cmd( |\"|$)" <<<"$entries" || fail "herald.1 has no entry for the command '$cmd'"
  count=$((count + 1))
  [ "$cmd" = help ] && continue
  sub=$("$hb" "$cmd" --help)
  check_options "herald $cmd" <<<"$sub"
  for nested in $(commands_of <<<"$sub"); do
    [ "$nested" = help ] && continue
    grep -qE "^\.BI? \"?$cmd $nested( |\"|$)" <<<"$entries" || fail "herald.1 has no entry for 'herald $cmd $nested'"
    check_options "herald $cmd $nested" <<<"$("$hb" "$cmd" "$nested" --help)"
  done
done
[ "$count" -ge 10 ] || fail "only $count commands found in herald --help: has its format changed?"
echo "$count commands and their options are in herald.1"

# ---------------------------------------------------------------- dpkg
if [ "$(id -u)" = 0 ] && command -v dpkg >/dev/null 2>&1; then
  step "dpkg -i / reinstall / -r / -P into a throwaway root"
  # dpkg --root would run the maintainer scripts chrooted into an empty
  # tree; they run here unchrooted instead, with stand-ins for the systemd
  # helpers first on PATH, so nothing touches this machine's systemd and
  # what the scripts ask of systemd is recorded.
  droot="$tmp/dpkg-root"
  mkdir -p "$droot/var/lib/dpkg/info" "$droot/var/lib/dpkg/updates" "$droot/var/lib/dpkg/triggers" "$tmp/fake"
  : >"$droot/var/lib/dpkg/status"
  : >"$droot/var/lib/dpkg/available"
  for helper in deb-systemd-helper deb-systemd-invoke systemctl; do
    printf '#!/bin/sh\necho "%s $*" >>"%s"\n' "$helper" "$tmp/calls" >"$tmp/fake/$helper"
    chmod +x "$tmp/fake/$helper"
  done
  dpkg_root() {
    PATH="$tmp/fake:$PATH" dpkg --root="$droot" --force-script-chrootless --force-depends \
      --log=/dev/null "$@" >"$tmp/dpkg.out" 2>&1 || { cat "$tmp/dpkg.out" >&2; fail "dpkg $*"; }
  }
  [ "$(PATH="$tmp/fake:$PATH" command -v deb-systemd-helper)" = "$tmp/fake/deb-systemd-helper" ] \
    || fail "the systemd helper stand-ins are not first on PATH"
  : >"$tmp/calls"
  dpkg_root -i "$deb"
  [ -x "$droot/usr/bin/herald" ] || fail "dpkg -i did not install /usr/bin/herald"
  dpkg-query --admindir="$droot/var/lib/dpkg" -W -f='${Conffiles}\n' herald | grep -q '^ /etc/herald/herald.toml [0-9a-f]\{32\}$' \
    || fail "dpkg does not record /etc/herald/herald.toml as a conffile"
  grep -q '^deb-systemd-helper enable herald.service$' "$tmp/calls" || fail "installing does not enable herald.service"
  # An operator's edit survives a reinstall (and an upgrade that leaves the
  # shipped file unchanged).
  echo '# edited by the operator' >>"$droot/etc/herald/herald.toml"
  dpkg_root -i "$deb"
  grep -q '^# edited by the operator$' "$droot/etc/herald/herald.toml" || fail "reinstalling overwrote an edited conffile"
  dpkg_root -r herald
  [ ! -e "$droot/usr/bin/herald" ] || fail "dpkg -r left /usr/bin/herald"
  [ -f "$droot/etc/herald/herald.toml" ] || fail "dpkg -r removed the conffile (only purge may)"
  dpkg_root -P herald
  [ ! -e "$droot/etc/herald/herald.toml" ] || fail "dpkg -P left the conffile"
  grep -q '^deb-systemd-helper purge herald.service$' "$tmp/calls" || fail "purging does not purge herald.service's state"
  echo "installed, kept an edited conffile on reinstall, removed, purged"
else
  echo "not root: the dpkg install check is skipped"
fi

echo "package.sh: OK: $deb ($((SECONDS - started)) s)"
