#!/bin/sh
# Run the container's command as the host user who owns the mounted project, so models, logs and
# caches written under /workspace belong to them on the host (what fixuid does in the seed).
# HOST_UID/HOST_GID override the guess; a container started with --user is left alone.
set -eu

if [ "$(id -u)" != "0" ]; then
    exec "$@"  # already a non-root user (docker run --user ...)
fi

# HOST_UID/HOST_GID must be positive integers written plainly: "00" or "+0" would be root to
# setpriv while looking like a user id here.
for name in HOST_UID HOST_GID; do
    eval "value=\${$name:-}"
    case "$value" in
        "") ;;
        0*|*[!0-9]*) echo "dev-entrypoint: $name=$value is not a positive integer (e.g. $name=\$(id -u)); refusing" >&2
                     exit 64 ;;
    esac
done
uid="${HOST_UID:-$(stat -c %u /workspace)}"
gid="${HOST_GID:-$(stat -c %g /workspace)}"
if [ "$uid" = "0" ]; then
    echo "dev-entrypoint: /workspace belongs to root; running as root (set HOST_UID/HOST_GID to change)" >&2
    exec "$@"
fi

# A name and a writable home for that id: some tools look the user up, Keras caches in ~/.keras.
if ! getent group "$gid" >/dev/null; then
    groupadd --gid "$gid" bertclf 2>/dev/null || echo "bertclf:x:$gid:" >> /etc/group
fi
if ! getent passwd "$uid" >/dev/null; then
    useradd --uid "$uid" --gid "$gid" --home-dir /home/bertclf --no-create-home --shell /bin/sh bertclf 2>/dev/null \
        || echo "bertclf:x:$uid:$gid::/home/bertclf:/bin/sh" >> /etc/passwd
fi
export HOME=/home/bertclf
mkdir -p "$HOME" && chown "$uid:$gid" "$HOME"

# no-new-privs: nothing the command runs can gain privileges (setuid binaries, file capabilities).
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs -- "$@"
