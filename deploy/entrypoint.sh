#!/bin/sh
# The image's entry point: `api`, `bot`, `migrate` (or any other `transcriber` command).
# Refuses to start, with one line naming the setting, when a required secret is missing:
# a container that would run with LiveKit's development keys or no database must not start.
set -eu

missing() {
  echo "transcriber: missing required setting $1 ($2); see deploy/README.md" >&2
  exit 78  # EX_CONFIG
}

require() {
  # require NAME WHY: NAME must be set and not empty
  eval "value=\${$1:-}"
  [ -n "$value" ] || missing "$1" "$2"
}

role="${1:-api}"
[ "$#" -gt 0 ] && shift

case "$role" in
  api)
    require DATABASE_URL "the PostgreSQL URL, postgresql+asyncpg://..."
    require LIVEKIT_API_KEY "the key LiveKit signs webhooks with"
    require LIVEKIT_API_SECRET "the secret of LIVEKIT_API_KEY"
    if [ -z "${API_ADMIN_KEY:-}" ] && [ -z "${API_JWT_SECRET:-}" ]; then
      missing "API_ADMIN_KEY" "or API_JWT_SECRET: no caller could sign in"
    fi
    ;;
  bot)
    require DATABASE_URL "the PostgreSQL URL, postgresql+asyncpg://..."
    require LIVEKIT_URL "the LiveKit server the bot joins, wss://..."
    require LIVEKIT_API_KEY "the bot signs its room tokens with it"
    require LIVEKIT_API_SECRET "the secret of LIVEKIT_API_KEY"
    ;;
  migrate)
    require DATABASE_URL "the PostgreSQL URL, postgresql+asyncpg://..."
    ;;
  transcribe | -h | --help)
    ;;
  *)
    # not a transcriber command: run it as given (a shell for debugging, say)
    exec "$role" "$@"
    ;;
esac

exec transcriber "$role" "$@"
