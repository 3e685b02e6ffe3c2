complete -c supervisord -l jobs-dir -d 'Directory of job files (NAME.json, drop-ins in NAME.json.d/)' -r -F
complete -c supervisord -l run-dir -d 'Directory of the control socket, runtime state, exit records and pid files' -r -F
complete -c supervisord -l data-dir -d 'Directory of container bundles and overlay directories' -r -F
complete -c supervisord -l log-dir -d 'Directory of job logs, one subdirectory per job' -r -F
complete -c supervisord -l cgroup-parent -d 'Cgroup, relative to supervisord\'s own, that contains the containers\' cgroups' -r
complete -c supervisord -l runtime -d 'The corral runtime binary [default: corral beside supervisord, else on PATH]' -r -F
complete -c supervisord -l monitor -d 'The per-container monitor binary [default: corral-monitor beside supervisord, else on PATH]' -r -F
complete -c supervisord -l socket-group -d 'Group, by name or number, whose members may use the control socket: the socket becomes mode 0660 and the run directory 0710, both owned by that group [default: root only, mode 0600]' -r
complete -c supervisord -l max-connections -d 'Maximum number of open control socket connections. A connection above it gets a 503 reply and is closed' -r
complete -c supervisord -l log-format -d 'Format of supervisord\'s own log on stderr; RUST_LOG sets the level' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per line'"
complete -c supervisord -l live-restore -d 'Exit at once on SIGTERM, SIGINT and SIGQUIT and leave every job running, for the next supervisord to adopt (`supervisorctl shutdown` still stops every job first); the systemd unit sets it, with KillMode=process'
complete -c supervisord -s h -l help -d 'Print help (see more with \'--help\')'
complete -c supervisord -s V -l version -d 'Print version'
