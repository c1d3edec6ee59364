#!/usr/bin/env bash
# Installs streetgate as a systemd service on a fresh Raspberry Pi OS / Debian Bookworm
# (64-bit or 32-bit). Safe to run again: it changes only what differs, and says what it did.
#
#   sudo deploy/install.sh                      # streetgate from this checkout
#   sudo deploy/install.sh --from streetgate-0.1.0-py3-none-any.whl
#   sudo deploy/install.sh --from streetgate    # from PyPI
#   deploy/install.sh --dry-run                 # say what would change, change nothing
#   deploy/install.sh --root /tmp/tree          # into a tree (tests, inspection); for an SD
#                                               # card image run it inside the image (chroot):
#                                               # a virtual environment's paths are absolute
#
# What it does: the system user `streetgate` (groups dialout and bluetooth), a virtual
# environment in /opt/streetgate/venv with streetgate in it, /usr/local/bin/streetgate, the
# unit /etc/systemd/system/streetgate.service, and /etc/streetgate/config.toml as a skeleton
# (only when there is none). Every later run fixes the config's owner and mode, checks it
# with the installed streetgate (as the service user) and prints its errors, or the TLS files
# still pending, with the next step; once it is valid and complete it enables and starts the
# service. Files a `streetgate run` as root left in /var/lib/streetgate go back to the
# service user. See docs/deploy.md, "First install".
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"

ROOT=/
DRY_RUN=0
REINSTALL=0
FROM=""
PYTHON=python3
SERVICE_USER=streetgate
OPT=/opt/streetgate
ETC=/etc/streetgate
STATE=/var/lib/streetgate
UNIT=/etc/systemd/system/streetgate.service
CONFIG="$ETC/config.toml"
changes=0

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    cat <<'EOF'
Options:
  --from SPEC     a wheel, an sdist, a source directory, or a PyPI requirement
                  (default: this checkout when run from one, else "streetgate" from PyPI)
  --root DIR      install under DIR instead of / (no service is started there);
                  also DESTDIR=DIR. A tree without etc/passwd (a package's
                  staging folder) gets no accounts: run this on the target once
  --python PATH   the Python to build the virtual environment with (default: python3)
  --reinstall     install streetgate again even if that version is there (a checkout
                  whose code changed but not its version)
  --dry-run       report what would change; change nothing
  -h, --help      this text
EOF
}

die() { echo "install: $*" >&2; exit 1; }
say() { echo "install: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --from) FROM="${2:?--from needs a value}"; shift 2 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --python) PYTHON="${2:?--python needs a path}"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --reinstall) REINSTALL=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
[ -n "${DESTDIR:-}" ] && [ "$ROOT" = / ] && ROOT="$DESTDIR"
ROOT="${ROOT%/}"            # "" for the real root
[ -z "$ROOT" ] || [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
live() { [ -z "$ROOT" ]; }  # installing on the running system (not into a tree)

if [ -z "$FROM" ]; then
    if [ -f "$repo/pyproject.toml" ] && grep -q '^name = "streetgate"' "$repo/pyproject.toml"; then
        FROM="$repo"
    else
        FROM=streetgate
    fi
fi

# Run a command that changes something, or only report it with --dry-run.
act() {
    local what="$1"; shift
    changes=$((changes + 1))
    if [ "$DRY_RUN" = 1 ]; then
        say "would: $what"
    else
        say "$what"
        "$@"
    fi
}

[ "$DRY_RUN" = 1 ] || [ "$(id -u)" = 0 ] || die "run it as root (sudo $0), or with --dry-run"

# -- Python ---------------------------------------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "$PYTHON is missing or older than 3.11 (Raspberry Pi OS Bookworm has 3.11)"
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    live || die "$PYTHON cannot make virtual environments; install python3-venv in the image"
    act "installing python3-venv with apt-get" \
        sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv'
fi

# -- 32-bit Raspberry Pi OS (armv7) ---------------------------------------------------------
# PyPI has no armv7 wheels of cffi, dbus-fast (bleak's D-Bus library) and zstandard: pip takes them from
# piwheels, the Raspberry Pi wheel index, or else builds them, which needs a compiler and the
# headers of Python and libffi. On arm64 and x86_64 PyPI has wheels of every dependency.
pip_index=()
case "$(uname -m)" in
    armv7l|armv6l)
        pip_index=(--extra-index-url https://www.piwheels.org/simple)
        build_deps=()
        for pkg in python3-dev libffi-dev build-essential; do
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' \
                || build_deps+=("$pkg")
        done
        if [ "${#build_deps[@]}" -gt 0 ] && ! live; then
            say "note: 32-bit ARM: install ${build_deps[*]} in the image, for dependencies piwheels lacks"
        elif [ "${#build_deps[@]}" -gt 0 ]; then
            act "installing ${build_deps[*]} with apt-get (32-bit ARM: dependencies without wheels are built)" \
                sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"' \
                _ "${build_deps[@]}"
        fi ;;
esac

# -- the service user -----------------------------------------------------------------------
# useradd --prefix edits $ROOT/etc/{passwd,group,shadow} without chroot'ing into $ROOT.
# A bare tree (no etc/passwd: a package's staging folder) gets no accounts: making a passwd
# file there would replace the target's. Its folders stay root's until install.sh runs on the
# target, which creates the user and gives them to it.
prefix=()
live || prefix=(--prefix "$ROOT")
bare=0
live || [ -f "$ROOT/etc/passwd" ] || bare=1
in_file() { grep -q "^$1:" "$ROOT/etc/$2" 2>/dev/null; }
if [ "$bare" = 1 ]; then
    say "note: $ROOT has no etc/passwd (a bare tree): the system user $SERVICE_USER is not created"
    say "      in it and its folders stay root's; on the target, run deploy/install.sh (or"
    say "      streetgate service install) once more: it creates $SERVICE_USER and gives it $STATE"
else
    if ! in_file "$SERVICE_USER" passwd; then
        act "creating the system user $SERVICE_USER" \
            useradd "${prefix[@]}" --system --user-group --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "streetgate edge gateway" "$SERVICE_USER"
    fi
    for group in dialout bluetooth; do
        if ! in_file "$group" group; then
            say "note: no group $group here (bluetooth comes with bluez); $SERVICE_USER is not in it"
        elif ! grep -Eq "^$group:[^:]*:[^:]*:(.*,)?$SERVICE_USER(,|$)" "$ROOT/etc/group"; then
            act "adding $SERVICE_USER to the group $group" \
                usermod "${prefix[@]}" --append --groups "$group" "$SERVICE_USER"
        fi
    done
fi
# Numeric ids from the tree's own files: chown by name would ask the running system's.
id_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$ROOT/etc/$2" 2>/dev/null || true; }
uid="$(id_of "$SERVICE_USER" passwd)"
gid="$(id_of "$SERVICE_USER" group)"
group_name="$SERVICE_USER"
[ "$bare" = 0 ] || uid=0 gid=0 group_name=root
uid="${uid:-$SERVICE_USER}" gid="${gid:-$SERVICE_USER}"  # dry run: the user is not there yet

# A directory or file with the given owner and mode, created or corrected only if it differs.
ensure_dir() {  # path owner group mode
    local path="$ROOT$1"
    if [ ! -d "$path" ]; then
        act "creating $1 ($2:$3, $4)" install -d -o "$2" -g "$3" -m "$4" "$path"
    elif [ "$(stat -c '%u:%g %a' "$path")" != "$2:$3 ${4#0}" ]; then
        act "setting $1 to $2:$3 $4" sh -c 'chown "$1:$2" "$4" && chmod "$3" "$4"' _ "$2" "$3" "$4" "$path"
    fi
}
ensure_file() {  # source target owner group mode
    local target="$ROOT$2"
    if [ ! -f "$target" ] || ! cmp -s "$1" "$target"; then
        act "installing $2" install -o "$3" -g "$4" -m "$5" "$1" "$target"
    elif [ "$(stat -c '%u:%g %a' "$target")" != "$3:$4 ${5#0}" ]; then
        act "setting $2 to $3:$4 $5" sh -c 'chown "$1:$2" "$4" && chmod "$3" "$4"' _ "$3" "$4" "$5" "$target"
    fi
}

ensure_dir "$OPT" 0 0 0755
ensure_dir "$ETC" 0 "$gid" 0770   # group-writable: a remote config-set replaces the file
ensure_dir "$ETC/tls" "$uid" "$gid" 0700   # TLS key files: the service user's, mode 0600
ensure_dir "$STATE" "$uid" "$gid" 0750     # systemd's StateDirectory= keeps it so
# The folder is the service user's, who could swap a file for a link to /etc/shadow while
# this runs: every file is opened without following a link (os.fwalk, O_NOFOLLOW) and
# changed through its descriptor, so only what is really in the folder is given away.
GIVE_BACK='
import os, stat, sys
top, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
for _, dirs, files, dir_fd in os.fwalk(top, follow_symlinks=False):
    for name in dirs + files:
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except OSError:  # a link (ELOOP), or gone
            continue
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
                os.fchown(fd, uid, gid)
                mode = 0o700 if stat.S_ISDIR(info.st_mode) else stat.S_IMODE(info.st_mode) & 0o700
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
'
# What a `streetgate run` as root left in the state directory (root's, 0644) the service can
# neither write nor open: give it back, files 0600 and folders 0700 as the gateway makes them.
# systemd's StateDirectory= re-owns only when the directory itself has the wrong owner.
if [ "$bare" = 0 ] && [ -d "$ROOT$STATE" ] && [ "$uid" -eq "$uid" ] 2>/dev/null; then
    strays="$(find "$ROOT$STATE" -mindepth 1 \( -type f -o -type d \) \( ! -uid "$uid" \
        -o ! -gid "$gid" -o \( -type f -perm /077 \) -o \( -type d ! -perm 700 \) \) \
        -printf '%P\n' | sort)"
    if [ -n "$strays" ]; then
        act "giving $(echo "$strays" | wc -l) file(s) in $STATE to $SERVICE_USER (files 0600, folders 0700): $(echo $strays)" \
            "$PYTHON" -c "$GIVE_BACK" "$ROOT$STATE" "$uid" "$gid"
    fi
fi
# System folders: created when missing (a bare tree), never re-owned (Debian's own modes).
for dir in /etc/systemd/system /usr/local/bin; do
    [ -d "$ROOT$dir" ] || act "creating $dir" install -d -m 0755 "$ROOT$dir"
done

# -- the virtual environment and streetgate -------------------------------------------------
venv="$ROOT$OPT/venv"
if [ ! -x "$venv/bin/python" ]; then
    act "creating the virtual environment $OPT/venv" "$PYTHON" -m venv "$venv"
fi
# The version FROM names, when it names one: a wheel or sdist file name, a checkout's
# gateway/__init__.py, or a pinned requirement; empty for "whatever PyPI has".
wanted_version() {
    case "$FROM" in
        *.whl) basename "$FROM" | cut -d- -f2 ;;
        *.tar.gz) basename "$FROM" .tar.gz | sed 's/^streetgate-//' ;;
        *==*) echo "${FROM#*==}" ;;
        *)
            if [ -f "$FROM/gateway/__init__.py" ]; then
                sed -n 's/^__version__ = "\(.*\)"/\1/p' "$FROM/gateway/__init__.py" | head -n1
            fi ;;
    esac
}
installed_version() {
    [ -x "$venv/bin/python" ] || return 0
    "$venv/bin/python" -c 'from importlib.metadata import version; print(version("streetgate"))' \
        2>/dev/null || true
}
code_changed=0
want="$(wanted_version)"
have="$(installed_version)"
if [ "$REINSTALL" = 1 ] || [ -z "$have" ] || { [ -n "$want" ] && [ "$want" != "$have" ]; }; then
    code_changed=1
    act "installing streetgate ${want:-(latest)} from $FROM into $OPT/venv${pip_index[1]:+ (also from ${pip_index[1]})}" \
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pip_index[@]}" \
        $([ "$REINSTALL" = 1 ] && echo --force-reinstall --no-deps) "$FROM"
fi
link="$ROOT/usr/local/bin/streetgate"
if [ "$(readlink "$link" 2>/dev/null)" != "$OPT/venv/bin/streetgate" ]; then
    act "linking /usr/local/bin/streetgate to $OPT/venv/bin/streetgate" \
        ln -sfn "$OPT/venv/bin/streetgate" "$link"
fi

# -- the unit and the config skeleton -------------------------------------------------------
unit_changed=$changes
ensure_file "$here/systemd/streetgate.service" "$UNIT" 0 0 0644
unit_changed=$((changes - unit_changed))
new_config=0
if [ ! -e "$ROOT$CONFIG" ]; then
    new_config=1
    act "writing the config skeleton $CONFIG (root:$group_name, 0640)" \
        install -o 0 -g "$gid" -m 0640 "$here/config.toml" "$ROOT$CONFIG"
elif [ "$(stat -c '%u:%g %a' "$ROOT$CONFIG")" != "0:$gid 640" ]; then
    # `streetgate init` writes 0600 for whoever ran it; the service user must read it.
    act "setting $CONFIG to root:$group_name 0640" \
        sh -c 'chown "0:$1" "$2" && chmod 0640 "$2"' _ "$gid" "$ROOT$CONFIG"
fi

# -- the service ----------------------------------------------------------------------------
systemd_runs() { live && [ -d /run/systemd/system ]; }
if systemd_runs && [ "$unit_changed" -gt 0 ]; then
    act "reloading systemd" systemctl daemon-reload
fi
next_init() {
    cat <<EOF

Next, the first install in order (docs/deploy.md, "First install"):
  1. the gateway's private key and a certificate signing request (CSR), made here:
       sudo streetgate creds init -c $CONFIG --gateway-id GATEWAY_ID
  2. send $ETC/tls/gateway.csr to the platform; it sends back the certificate and its CA
  3. the config; the wizard asks one question at a time ('later' for TLS files not there yet):
       sudo streetgate init $CONFIG --force
  4. install what the platform sent (checked against the key, the gateway id and the CA):
       sudo streetgate creds install -c $CONFIG --cert GATEWAY_ID.crt --ca ca.crt
Then run this script again: it checks the config as $SERVICE_USER and starts the service.
EOF
}
next_tls() {
    cat <<EOF

Next: make or install the TLS files named above (docs/deploy.md, "First install"), e.g.
    sudo streetgate creds install -c $CONFIG --cert GATEWAY_ID.crt --ca ca.crt
then run this script again: it starts the service once they are there.
EOF
}
# The installed streetgate checks the config (as the service user on this system): its issues
# or the TLS files still pending are printed; the install goes on either way. Sets
# config_state to valid, pending (valid, but TLS files are missing) or invalid.
check_config() {
    local shown rc=0
    if live; then
        shown="$(runuser -u "$SERVICE_USER" -- "$OPT/venv/bin/streetgate" config validate --ready "$CONFIG")" || rc=$?
    else  # under --root: paths in the config are looked up on this machine
        shown="$("$venv/bin/streetgate" config validate --ready "$ROOT$CONFIG")" || rc=$?
    fi
    if [ "$rc" = 0 ]; then
        config_state=valid
    elif [ "$rc" != 3 ]; then
        config_state=unchecked
        say "cannot check $CONFIG: streetgate config validate failed (exit $rc; above)"
    elif [ "${shown#ok: }" != "$shown" ]; then
        config_state=pending
    else
        config_state=invalid
    fi
}
config_state=unchecked
if [ "$new_config" = 1 ] || [ ! -e "$ROOT$CONFIG" ]; then
    next_init
elif live && [ "$DRY_RUN" = 1 ]; then
    say "would: check $CONFIG as $SERVICE_USER, then enable and start streetgate if it is valid"
elif ! live && [ ! -x "$venv/bin/streetgate" ]; then
    say "config present; not checked (streetgate is not installed in $ROOT yet)"
else
    check_config
fi
case "$config_state" in
    invalid)
        say "$CONFIG is not valid yet (the errors are above); the service is not started"
        next_init ;;
    pending)
        say "$CONFIG is valid, but the TLS files above are not there yet; the service is not started"
        next_tls ;;
    valid)
        if ! live; then
            say "config valid; under --root no service is started"
            say "enable it in the image with: systemctl --root=$ROOT enable streetgate"
        elif ! systemd_runs; then
            say "config valid; systemd is not running here: enable it with systemctl enable streetgate"
        else
            if ! systemctl is-enabled --quiet streetgate; then
                act "enabling streetgate (starts at boot)" systemctl enable --quiet streetgate
            fi
            if ! systemctl is-active --quiet streetgate; then
                act "starting streetgate" systemctl start streetgate
            elif [ "$unit_changed" -gt 0 ] || [ "$code_changed" = 1 ]; then
                act "restarting streetgate (its unit or its code changed)" systemctl restart streetgate
            fi
            cat <<EOF

streetgate runs. Check it on site:
    sudo -u $SERVICE_USER streetgate doctor -c $CONFIG
    systemctl status streetgate        journalctl -u streetgate -f
EOF
        fi ;;
esac

if [ "$DRY_RUN" = 1 ]; then
    say "dry run: $changes change(s) would be made"
else
    say "done: $changes change(s)"
fi
