"""Tests of the deployment files: systemd unit, install script, balena."""
