// Package deploy holds no code: it is the home of pgwarden's packaging
// (container image, compose file, systemd unit, Helm chart; the release
// configuration is .goreleaser.yaml at the repository's root), and its
// tests check those files: the Dockerfiles' stages, user and health check,
// the compose file's services and mounts, the unit with systemd-analyze and
// by running its command line against a throwaway PostgreSQL, and the
// chart with helm lint and helm template (helm built from deploy/tools).
package deploy
