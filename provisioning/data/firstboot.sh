#!/bin/bash
# hailong first boot: move this counter's bundle off the card, install the software from the
# wheelhouse on the card (never from the network) and enable hailong-device.service.
# Written to the boot partition by `hailong provision boot write` (provisioning/data/firstboot.sh).
#
# Runs as root: first from firstrun.sh (cmdline.txt's systemd.run=), then at every boot from
# hailong-firstboot.service until every step has succeeded. Every step is idempotent and is
# retried until it succeeds; whatever happens, the secrets leave the FAT partition (anyone who
# takes the card out can read it) as soon as a copy is safe on the root file system.
#
# Progress: `journalctl -t hailong-firstboot` on the Pi, and firstboot-status.txt beside this
# script, plain text without secrets, readable on any computer the card is put into.
set -u
umask 077

BOOT=${HAILONG_BOOT:-/boot/firmware}
# Tests run the script against a scratch tree (HAILONG_PREFIX) as a user that exists (HAILONG_USER).
PREFIX=${HAILONG_PREFIX:-}
SERVICE_USER=${HAILONG_USER:-hailong}
SRC=$BOOT/hailong
WHEELS=$SRC/wheels
STATUS=$SRC/firstboot-status.txt
ETC=$PREFIX/etc/hailong
STATE=$PREFIX/var/lib/hailong
VENV=$PREFIX/opt/hailong/.venv
UNITS=$PREFIX/etc/systemd/system
PROGRESS=$PREFIX/var/lib/hailong-firstboot
BUNDLE="device.toml mqtt-password provisioning-key ca.crt"
SECRETS="mqtt-password provisioning-key"
STEPS="secrets retry user owner software unit"
START_SERVICE=0
[ "${1:-}" = "--start" ] && START_SERVICE=1

log() {
    echo "hailong firstboot: $*"
    logger -t hailong-firstboot -- "$*" 2>/dev/null || true
}

# A step's own words for the status file; the step's stderr goes there too.
fail() {
    echo "$*" >&2
    exit 1
}

# --- the steps: each runs in a subshell with `set -e`, so its first failing command fails it ---

step_secrets() {
    install -d -m 0700 "$ETC"
    for f in $BUNDLE; do
        [ -f "$SRC/$f" ] || continue
        cp "$SRC/$f" "$ETC/.$f.new"
        sync "$ETC/.$f.new"
        mv -f "$ETC/.$f.new" "$ETC/$f"
        cmp -s "$SRC/$f" "$ETC/$f"
        rm -f "$SRC/$f"
    done
    sync
    [ -f "$ETC/device.toml" ] || fail "no device.toml on the card nor in $ETC: write the card again with hailong provision boot write"
    [ -f "$ETC/mqtt-password" ] || fail "no mqtt-password on the card nor in $ETC: write the card again with hailong provision boot write"
}

# Retries do not depend on firstrun.sh: Raspberry Pi Imager's version deletes itself whatever we return.
step_retry() {
    install -d -m 0755 "$UNITS/multi-user.target.wants"
    install -m 0644 "$SRC/hailong-firstboot.service" "$UNITS/hailong-firstboot.service"
    # By hand, not `systemctl enable`: this must work even where systemctl does not.
    ln -sfn ../hailong-firstboot.service "$UNITS/multi-user.target.wants/hailong-firstboot.service"
}

step_user() {
    if ! id "$SERVICE_USER" >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/hailong --no-create-home \
            --shell /usr/sbin/nologin "$SERVICE_USER"
        log "created user $SERVICE_USER"
    fi
    local group groups=""
    for group in gpio spi dialout; do
        getent group "$group" >/dev/null && groups="$groups,$group"
    done
    if [ -n "$groups" ]; then
        usermod -aG "${groups#,}" "$SERVICE_USER"
    fi
}

step_owner() {
    local group
    group=$(id -gn "$SERVICE_USER")
    chown -R "$SERVICE_USER:$group" "$ETC"
    chmod 0700 "$ETC"
    find "$ETC" -type f -exec chmod 0600 {} +
    install -d -m 0750 -o "$SERVICE_USER" -g "$group" "$STATE"
    # A ledger made by root (say `sudo hailong device doctor` before this fix) must become the user's.
    chown -R "$SERVICE_USER:$group" "$STATE"
}

step_software() {
    local tag req want stamp missing pkg options
    stamp=$VENV/.hailong-wheelhouse
    if [ ! -f "$WHEELS/manifest.json" ]; then
        if [ -x "$VENV/bin/hailong" ]; then
            log "no wheelhouse on the card; keeping the software already installed in $VENV"
            return 0
        fi
        fail "no wheelhouse on the card ($WHEELS) and no software in $VENV: write the card with hailong provision boot write --wheels DIR"
    fi
    tag=$(python3 -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    req=$WHEELS/requirements-$tag.txt
    [ -f "$req" ] || fail "the wheelhouse has no wheels for this image's Python ($tag): see docs/provisioning.md for the supported Raspberry Pi OS versions"
    want=$(sha256sum "$WHEELS/manifest.json" | cut -d' ' -f1)
    if [ -x "$VENV/bin/hailong" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    missing=""
    for pkg in $(sed -n 's/^# system-packages: //p' "$req"); do
        dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q ' installed$' || missing="$missing $pkg"
    done
    [ -z "$missing" ] || fail "the image lacks Raspberry Pi OS packages:$missing (apt install them, or use Raspberry Pi OS Lite, which has them)"
    options=$(sed -n 's/^# venv-options: //p' "$req")
    # The service user runs this software: readable by all, unlike the secrets (umask 077).
    umask 022
    install -d -m 0755 "$(dirname "$VENV")"
    rm -rf "$VENV"
    # shellcheck disable=SC2086  # options are words
    python3 -m venv $options "$VENV"
    # Only the card's wheels, only with their hashes; no pip configuration of the image applies.
    env $(compgen -e | grep '^PIP_' | sed 's/^/-u /') PIP_CONFIG_FILE=/dev/null \
        "$VENV/bin/python" -m pip install --no-index --find-links "$WHEELS" --require-hashes --no-deps \
        --no-cache-dir --disable-pip-version-check --no-input -r "$req"
    "$VENV/bin/hailong" device example-config >/dev/null
    echo "$want" > "$stamp"
}

step_unit() {
    install -d -m 0755 "$UNITS"
    install -m 0644 "$SRC/hailong-device.service" "$UNITS/hailong-device.service"
    # Without a running systemd (a chroot, an image being prepared) there is nothing to reload.
    if [ -z "$PREFIX" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    systemctl ${PREFIX:+--root="$PREFIX"} enable hailong-device.service
}

# --- whatever happened: no secret stays on the card if the root file system can take it ---

scrub_card() {
    local f
    for f in $BUNDLE; do
        [ -f "$SRC/$f" ] || continue
        if ! cmp -s "$SRC/$f" "$ETC/$f" 2>/dev/null; then
            # The secrets step failed part-way: save the file by the plainest means there are.
            mkdir -p "$ETC" 2>/dev/null && chmod 0700 "$ETC" 2>/dev/null
            { cat "$SRC/$f" > "$ETC/.$f.new" && mv -f "$ETC/.$f.new" "$ETC/$f"; } 2>/dev/null || continue
            log "saved $f to $ETC after the secrets step failed"
        fi
        cmp -s "$SRC/$f" "$ETC/$f" && rm -f "$SRC/$f"
    done
    sync
}

secrets_on_card() {
    local f left=""
    for f in $SECRETS; do
        [ -f "$SRC/$f" ] && left="$left $f"
    done
    echo "${left# }"
}

# --- the status file: CRLF so that any computer's text editor shows its lines ---

device_id() {
    sed -n 's/^id = "\(.*\)"$/\1/p' "$ETC/device.toml" 2>/dev/null | head -n 1
}

step_state() {
    if [ -e "$PROGRESS/$1.done" ]; then
        echo "done"
    elif [ "$1" = "${FAILED:-}" ]; then
        echo "FAILED: $(tail -n 1 "$PROGRESS/$1.err" 2>/dev/null)"
    else
        echo "not yet"
    fi
}

write_status() {
    local result left step
    left=$(secrets_on_card)
    if [ -e "$PROGRESS/done" ]; then
        result="DONE: the counter software is installed and hailong-device.service is enabled."
    elif [ -n "${FAILED:-}" ]; then
        result="FAILED at step \"$FAILED\" (attempt $RUN); it is tried again at every boot until it succeeds."
    else
        result="RUNNING (attempt $RUN): if this is still here, the Pi stopped mid-way; it goes on at the next boot."
    fi
    {
        echo "hailong first boot"
        echo "=================="
        echo "Result:  $result"
        echo "Device:  $(device_id)"
        echo "Written: $(date -u '+%Y-%m-%d %H:%M:%S') UTC (wrong if the Pi's clock was not set yet)"
        if [ -n "$left" ]; then
            echo "Secrets on this card: STILL HERE: $left. The Pi could not save them; rotate this device's"
            echo "         password (hailong provision device rotate ID) and write the card again."
        else
            echo "Secrets on this card: none (moved to /etc/hailong on the Pi)"
        fi
        echo ""
        echo "Steps:"
        for step in $STEPS; do
            printf '  %-9s %s\n' "$step" "$(step_state "$step")"
        done
        if [ -n "${FAILED:-}" ] && [ -s "$PROGRESS/$FAILED.err" ]; then
            echo ""
            echo "Last messages of step $FAILED:"
            tail -n 8 "$PROGRESS/$FAILED.err" | sed 's/^/  /'
        fi
        echo ""
        echo "Full log on the Pi: journalctl -t hailong-firstboot"
    } | sed 's/$/\r/' > "$STATUS.new" && mv -f "$STATUS.new" "$STATUS"
    sync
}

finish() {
    touch "$PROGRESS/done"
    rm -f "$UNITS/multi-user.target.wants/hailong-firstboot.service"
    if [ "$START_SERVICE" = 1 ]; then
        systemctl start --no-block hailong-device.service || log "could not start hailong-device.service now; it starts at the next boot"
    fi
}

main() {
    local step rc
    FAILED=""
    RUN=1
    trap 'scrub_card; write_status' EXIT
    mkdir -p "$PROGRESS" || { log "cannot write $PROGRESS"; exit 1; }
    # A bundle on the card is a new provisioning (a new card, or `boot write` again): do it all again.
    for f in $BUNDLE; do
        if [ -f "$SRC/$f" ]; then
            rm -f "$PROGRESS"/*.done "$PROGRESS/done"
            break
        fi
    done
    RUN=$(( $(cat "$PROGRESS/runs" 2>/dev/null || echo 0) + 1 ))
    echo "$RUN" > "$PROGRESS/runs"
    if [ -e "$PROGRESS/done" ]; then
        log "already done"
        return 0
    fi
    log "attempt $RUN"
    for step in $STEPS; do
        [ -e "$PROGRESS/$step.done" ] && continue
        write_status
        ( set -e; "step_$step" ) 2> "$PROGRESS/$step.err"
        rc=$?
        while IFS= read -r line; do log "$step: $line"; done < "$PROGRESS/$step.err"
        if [ "$rc" != 0 ]; then
            FAILED=$step
            log "step $step FAILED (exit $rc); it is tried again at the next boot"
            return 1
        fi
        touch "$PROGRESS/$step.done"
        log "step $step done"
    done
    finish
    log "done: hailong-device.service is enabled"
}

main
