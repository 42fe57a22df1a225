#!/bin/sh
# The tools `npm run bench` compares Coffer with, from Debian's packages, and
# GNU time (peak memory of each tool's run). Each one is optional: the report
# names those it did not find.
set -eu
apt-get update
apt-get install -y --no-install-recommends pgbackrest restic borgbackup time
