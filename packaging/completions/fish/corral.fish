# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_corral_global_optspecs
    string join \n root= log= log-format= debug systemd-cgroup h/help V/version
end

function __fish_corral_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_corral_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_corral_using_subcommand
    set -l cmd (__fish_corral_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c corral -n "__fish_corral_needs_command" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_needs_command" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_needs_command" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_needs_command" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_needs_command" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_needs_command" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_needs_command" -s V -l version -d 'Print version'
complete -c corral -n "__fish_corral_needs_command" -f -a "spec" -d 'Write a default config.json into the bundle directory'
complete -c corral -n "__fish_corral_needs_command" -f -a "create" -d 'Create a container and leave its process waiting for `start`'
complete -c corral -n "__fish_corral_needs_command" -f -a "start" -d 'Start the process of a created container'
complete -c corral -n "__fish_corral_needs_command" -f -a "state" -d 'Print a container\'s OCI state as JSON'
complete -c corral -n "__fish_corral_needs_command" -f -a "kill" -d 'Send a signal (name or number, default SIGTERM) to a container'
complete -c corral -n "__fish_corral_needs_command" -f -a "delete" -d 'Remove a container and everything it owns'
complete -c corral -n "__fish_corral_needs_command" -f -a "run" -d 'Create, start and wait for a container; exits with its status'
complete -c corral -n "__fish_corral_needs_command" -f -a "shim" -d 'Run a container for supervisord: as `run`, with the exit record written to --exit-file'
complete -c corral -n "__fish_corral_needs_command" -f -a "exec" -d 'Run another process inside a running container'
complete -c corral -n "__fish_corral_needs_command" -f -a "pause" -d 'Freeze every process of a container'
complete -c corral -n "__fish_corral_needs_command" -f -a "resume" -d 'Thaw a paused container'
complete -c corral -n "__fish_corral_needs_command" -f -a "update" -d 'Change a container\'s resource limits'
complete -c corral -n "__fish_corral_needs_command" -f -a "events" -d 'Print resource statistics and OOM events as JSON lines'
complete -c corral -n "__fish_corral_needs_command" -f -a "features" -d 'Print the features this runtime supports, as JSON'
complete -c corral -n "__fish_corral_needs_command" -f -a "ps" -d 'List the processes of a container'
complete -c corral -n "__fish_corral_needs_command" -f -a "list" -d 'List containers'
complete -c corral -n "__fish_corral_needs_command" -f -a "image" -d 'Manage the image store: import, ls, inspect, rm, gc'
complete -c corral -n "__fish_corral_using_subcommand spec" -s b -l bundle -d 'Bundle directory to write config.json into' -r -F
complete -c corral -n "__fish_corral_using_subcommand spec" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand spec" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand spec" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand spec" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand spec" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand spec" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand create" -s b -l bundle -d 'Bundle directory that contains config.json' -r -F
complete -c corral -n "__fish_corral_using_subcommand create" -l pid-file -d 'Write the PID of the container\'s process to this file' -r -F
complete -c corral -n "__fish_corral_using_subcommand create" -l console-socket -d 'Unix socket that receives the master of the process\'s terminal when config.json sets process.terminal' -r -F
complete -c corral -n "__fish_corral_using_subcommand create" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand create" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand create" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand create" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand create" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand create" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand start" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand start" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand start" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand start" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand start" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand start" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand state" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand state" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand state" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand state" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand state" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand state" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand kill" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand kill" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand kill" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand kill" -s a -l all -d 'Signal every process in the container\'s cgroup'
complete -c corral -n "__fish_corral_using_subcommand kill" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand kill" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand kill" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand delete" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand delete" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand delete" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand delete" -s f -l force -d 'Kill the container first if it is running'
complete -c corral -n "__fish_corral_using_subcommand delete" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand delete" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand delete" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand run" -s b -l bundle -d 'Bundle directory that contains config.json' -r -F
complete -c corral -n "__fish_corral_using_subcommand run" -l pid-file -d 'Write the PID of the container\'s process to this file' -r -F
complete -c corral -n "__fish_corral_using_subcommand run" -l exit-file -d 'Write the exit record (status, signal, OOM kills) to this file' -r -F
complete -c corral -n "__fish_corral_using_subcommand run" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand run" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand run" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand run" -s d -l detach -d 'Return once the container runs instead of waiting for it'
complete -c corral -n "__fish_corral_using_subcommand run" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand run" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand run" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand shim" -s b -l bundle -d 'Bundle directory that contains config.json' -r -F
complete -c corral -n "__fish_corral_using_subcommand shim" -l exit-file -d 'Write the exit record (status, signal, OOM kills) to this file' -r -F
complete -c corral -n "__fish_corral_using_subcommand shim" -l pid-file -d 'Write the PID of the container\'s process to this file' -r -F
complete -c corral -n "__fish_corral_using_subcommand shim" -l stopped-file -d 'Create this file, containing the signal\'s name, while the container\'s process is stopped by a signal' -r -F
complete -c corral -n "__fish_corral_using_subcommand shim" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand shim" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand shim" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand shim" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand shim" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand shim" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand exec" -s p -l process -d 'JSON file with an OCI process object to run' -r -F
complete -c corral -n "__fish_corral_using_subcommand exec" -s e -l env -d 'Set an environment variable, KEY=VALUE' -r
complete -c corral -n "__fish_corral_using_subcommand exec" -l cwd -d 'Working directory inside the container' -r -F
complete -c corral -n "__fish_corral_using_subcommand exec" -s u -l user -d 'UID[:GID] to run as' -r
complete -c corral -n "__fish_corral_using_subcommand exec" -l pid-file -d 'Write the PID of the new process to this file' -r -F
complete -c corral -n "__fish_corral_using_subcommand exec" -l console-socket -d 'Unix socket that receives the master of the terminal' -r -F
complete -c corral -n "__fish_corral_using_subcommand exec" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand exec" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand exec" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand exec" -s t -l tty -d 'Give the process a terminal, sent to --console-socket'
complete -c corral -n "__fish_corral_using_subcommand exec" -s d -l detach -d 'Return once the process runs instead of waiting for it'
complete -c corral -n "__fish_corral_using_subcommand exec" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand exec" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand exec" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand pause" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand pause" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand pause" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand pause" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand pause" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand pause" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand resume" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand resume" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand resume" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand resume" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand resume" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand resume" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand update" -s r -l resources -d 'JSON file with OCI linux.resources ("-" reads stdin); flags override it' -r -F
complete -c corral -n "__fish_corral_using_subcommand update" -l memory -d 'Memory limit in bytes or with a K, M or G suffix' -r
complete -c corral -n "__fish_corral_using_subcommand update" -l memory-swap -d 'Memory plus swap limit' -r
complete -c corral -n "__fish_corral_using_subcommand update" -l memory-reservation -d 'Memory soft limit' -r
complete -c corral -n "__fish_corral_using_subcommand update" -l cpu-quota -d 'CFS quota in microseconds per period (-1 for none)' -r
complete -c corral -n "__fish_corral_using_subcommand update" -l cpu-period -d 'CFS period in microseconds' -r
complete -c corral -n "__fish_corral_using_subcommand update" -l cpu-share -d 'Relative CPU shares (v1 scale; converted on cgroup v2)' -r
complete -c corral -n "__fish_corral_using_subcommand update" -l cpuset-cpus -d 'CPUs the container may use, e.g. 0-2,4' -r
complete -c corral -n "__fish_corral_using_subcommand update" -l cpuset-mems -d 'Memory nodes the container may use' -r
complete -c corral -n "__fish_corral_using_subcommand update" -l pids-limit -d 'Maximum number of tasks' -r
complete -c corral -n "__fish_corral_using_subcommand update" -l blkio-weight -d 'Block I/O weight, 10 to 1000' -r
complete -c corral -n "__fish_corral_using_subcommand update" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand update" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand update" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand update" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand update" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand update" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand events" -l interval -d 'Seconds between statistics' -r
complete -c corral -n "__fish_corral_using_subcommand events" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand events" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand events" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand events" -l stats -d 'Print statistics once and exit'
complete -c corral -n "__fish_corral_using_subcommand events" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand events" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand events" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand features" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand features" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand features" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand features" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand features" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand features" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand ps" -s f -l format -d 'Output format' -r -f -a "table\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand ps" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand ps" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand ps" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand ps" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand ps" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand ps" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand list" -s f -l format -d 'Output format' -r -f -a "table\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand list" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand list" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand list" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand list" -s q -l quiet -d 'Print only the container ids'
complete -c corral -n "__fish_corral_using_subcommand list" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand list" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand list" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -l store -d 'Image store directory; supervisord reads DATA_DIR/images' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -f -a "import" -d 'Import an image from a rootfs directory, a rootfs tarball (plain, gzip or zstd), an OCI layout directory, an oci-archive or a `docker save` archive'
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -f -a "ls" -d 'List the images of the store'
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -f -a "inspect" -d 'Print an image\'s record as JSON: layers with their directories, size, platform and config (entrypoint, cmd, env, working dir, user)'
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -f -a "rm" -d 'Remove images from the store; their layers stay until `gc`, and while containers use them'
complete -c corral -n "__fish_corral_using_subcommand image; and not __fish_seen_subcommand_from import ls inspect rm gc" -f -a "gc" -d 'Remove layers that no image lists, except those that a container holds a lease on (whatever its --root) or that containers under --root use, and leftovers of interrupted imports'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from import" -l name -d 'Name in the store [default: the source\'s own image name, else its file name without extensions]' -r
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from import" -l platform -d 'Platform to take from a multi-platform image, as OS/ARCHITECTURE[/VARIANT] [default: this host\'s]' -r
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from import" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from import" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from import" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from import" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from import" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from ls" -s f -l format -d 'Output format' -r -f -a "table\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from ls" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from ls" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from ls" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from ls" -s q -l quiet -d 'Print only the image names'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from ls" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from ls" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from inspect" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from inspect" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from inspect" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from inspect" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from inspect" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from inspect" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from rm" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from rm" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from rm" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from rm" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from rm" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from gc" -l root -d 'Directory for container state' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from gc" -l log -d 'Write log lines to this file instead of stderr' -r -F
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from gc" -l log-format -d 'Format of log lines' -r -f -a "text\t''
json\t''"
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from gc" -l debug -d 'Log debug messages'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from gc" -l systemd-cgroup -d 'Manage cgroups through systemd (not supported)'
complete -c corral -n "__fish_corral_using_subcommand image; and __fish_seen_subcommand_from gc" -s h -l help -d 'Print help'
