#!/bin/sh
# Before the deb or rpm is removed (not upgraded): stop and disable the
# service. The audit log and state in /var/lib/pgwarden are kept.
set -e
case "$1" in
	remove|0)
		if [ -d /run/systemd/system ]; then
			systemctl disable --now pgwarden.service >/dev/null 2>&1 || true
		fi
		;;
esac
exit 0
