#!/usr/bin/env bash
# A virtual microphone for machines without a sound card (CI, containers, servers).
#
# Starts a PulseAudio daemon with a null sink "vmic" and makes its monitor the default
# source: whatever is played into the sink is what a program recording from the default
# (or the ALSA "pulse") input hears:
#
#   bash scripts/virtual-mic.sh
#   paplay -d vmic speech.wav &
#   python -m client mic --device pulse
#
# Idempotent: a running daemon is reused (the sink is added if missing). Works as root:
# PulseAudio only warns there (per-user mode, runtime dir under /tmp, found by clients
# through ~/.config/pulse), no --system or PULSE_RUNTIME_PATH needed.
# Needs the Debian packages pulseaudio pulseaudio-utils libasound2-plugins (and
# libportaudio2 for sounddevice); `--install` apt-get installs missing ones.
# Exit status: 0 when the virtual microphone is ready, 1 when it could not be started.
set -u

SINK=vmic
log() { echo "virtual-mic: $*" >&2; }

if [ "${1:-}" = "--install" ]; then
    missing=()
    command -v pulseaudio >/dev/null || missing+=(pulseaudio)
    command -v pactl >/dev/null || missing+=(pulseaudio-utils)
    [ -e /usr/share/alsa/alsa.conf.d/pulse.conf ] || missing+=(libasound2-plugins)
    ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || missing+=(libportaudio2)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get install -y -qq "${missing[@]}" >/dev/null || {
            apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null
        } || { log "could not install ${missing[*]}"; exit 1; }
    fi
fi

for tool in pulseaudio pactl; do
    command -v "$tool" >/dev/null || {
        log "$tool not found (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)"
        exit 1
    }
done

ensure_sink() {
    if ! pactl list short sinks 2>/dev/null | awk '{print $2}' | grep -qx "$SINK"; then
        pactl load-module module-null-sink sink_name="$SINK" >/dev/null || return 1
    fi
    pactl set-default-source "$SINK.monitor" && pactl set-default-sink "$SINK"
}

if pactl info >/dev/null 2>&1; then
    ensure_sink || { log "PulseAudio is running but the $SINK sink could not be set up"; exit 1; }
    log "already running; default source $SINK.monitor"
    exit 0
fi

# -n: no default.pa (no hardware probing); never exit when idle.
if ! pulseaudio -D -n --exit-idle-time=-1 \
        --load="module-null-sink sink_name=$SINK" \
        --load=module-native-protocol-unix 2>/tmp/virtual-mic.log; then
    grep -v "not intended to be run as root" /tmp/virtual-mic.log >&2
    log "pulseaudio failed to start"
    exit 1
fi

for _ in $(seq 50); do
    pactl info >/dev/null 2>&1 && break
    sleep 0.1
done
if ! pactl info >/dev/null 2>&1; then
    log "pulseaudio started but does not answer (pactl info fails)"
    exit 1
fi
ensure_sink || { log "could not set up the $SINK sink"; exit 1; }
log "ready: play into it with 'paplay -d $SINK FILE', record from device 'pulse' (default source $SINK.monitor)"
