#!/bin/sh
# After the deb or rpm is installed: create the pgwarden user and tell
# systemd about the unit. The service is not started: it needs
# /etc/pgwarden/audit.key, admin.token and an edited pgwarden.yaml first
# (docs/deploy.md).
set -e
if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers pgwarden.conf || true
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
