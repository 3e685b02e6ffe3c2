# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_supervisorctl_global_optspecs
    string join \n socket= timeout= h/help V/version
end

function __fish_supervisorctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_supervisorctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_supervisorctl_using_subcommand
    set -l cmd (__fish_supervisorctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -s V -l version -d 'Print version'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "status" -d 'Print the state of every job, or of the named ones. Exits 0 when all of them are RUNNING, 3 when any is not, 4 for an unknown name'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "start" -d 'Start jobs and wait until they are RUNNING or failed to start'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "stop" -d 'Stop jobs and wait until their containers ended'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "restart" -d 'Stop jobs, then start them again'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "signal" -d 'Send a signal to the main process of jobs; STOP and CONT pause and resume every process of the job'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "pid" -d 'Print the host PID of PID 1 of a job\'s container (the job\'s command, or the minimal init with "init": true), or supervisord\'s PID without a name. Exits 3 when the job is not running'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "tail" -d 'Print the end of a job\'s stdout (or stderr) log'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "reread" -d 'Re-scan the jobs directory and print what `update` would change'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "update" -d 'Re-scan the jobs directory and apply the changes'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "spec" -d 'Print the OCI config.json generated for a job'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "top" -d 'Show live CPU, memory against its limit, network and block I/O and processes of every job, or of the named ones, refreshing'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "stats" -d 'Show live CPU, memory against its limit, network and block I/O and processes of every job, or of the named ones, refreshing'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "shutdown" -d 'Stop every job and then supervisord, and wait until it exited'
complete -c supervisorctl -n "__fish_supervisorctl_needs_command" -f -a "completions" -d 'Print a completion script for this command'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand status" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand status" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand status" -l json -d 'Print the API\'s JSON instead of the table'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand start" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand start" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand start" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand stop" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand stop" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand stop" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand restart" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand restart" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand restart" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand signal" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand signal" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand signal" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand pid" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand pid" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand pid" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand tail" -s n -l lines -d 'Number of lines to print from the end' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand tail" -l log-dir -d 'Read logs below this directory without asking supervisord for the path (LOG_DIR/NAME/stdout.log)' -r -f -a "(__fish_complete_directories)"
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand tail" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand tail" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand tail" -s f -l follow -d 'Keep printing lines as the job writes them'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand tail" -l stderr -d 'Read the stderr log instead of stdout'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand tail" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand reread" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand reread" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand reread" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand update" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand update" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand update" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand spec" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand spec" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand spec" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand top" -s d -l interval -d 'Time between refreshes: seconds (2, 0.5) or with a unit (500ms, 2s, 1m)' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand top" -s n -l iterations -d 'Print this many tables, then exit' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand top" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand top" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand top" -l no-stream -d 'Print one table and exit, as `docker stats --no-stream` does'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand top" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand stats" -s d -l interval -d 'Time between refreshes: seconds (2, 0.5) or with a unit (500ms, 2s, 1m)' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand stats" -s n -l iterations -d 'Print this many tables, then exit' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand stats" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand stats" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand stats" -l no-stream -d 'Print one table and exit, as `docker stats --no-stream` does'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand stats" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand shutdown" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand shutdown" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand shutdown" -l no-wait -d 'Return once supervisord accepted the request'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand shutdown" -s h -l help -d 'Print help'
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand completions" -l socket -d 'Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if not empty, else /run/corral/supervisor.sock]' -r -F
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand completions" -l timeout -d 'Limit of each request to supervisord: seconds (30) or with a unit (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart wait past it for the job to settle once supervisord responded, and `top` and `tail -f` wait without a limit between requests' -r -f
complete -c supervisorctl -n "__fish_supervisorctl_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'

# Job names from the running supervisord.
function __supervisorctl_jobs
    set -l socket
    set -l words (commandline -opc)
    for index in (seq 2 (count $words))
        switch $words[$index]
            case --socket
                set socket --socket (string replace -r '^~' -- $HOME $words[(math $index + 1)])
            case '--socket=*'
                set -l path (string replace -- --socket= '' $words[$index])
                set socket --socket (string replace -r '^~' -- $HOME $path)
        end
    end
    set -l program (string replace -r '^~' -- $HOME $words[1])
    $program $socket --timeout 1s status --json 2>/dev/null | string match -r -g '^    "name": "(.*)",$'
end

# Job names and `all`, or nothing when supervisord did not respond, so
# that `all` alone is not inserted into the line.
function __supervisorctl_jobs_or_all
    set -l names (__supervisorctl_jobs)
    test (count $names) -gt 0; or return
    printf '%s\n' $names all
end

# Succeeds when the word being completed takes what $argv[1] names:
# jobs-or-all, jobs or signal.
function __supervisorctl_completes
    set -l words (commandline -opc)
    set -l command
    set -l arguments 0
    set -l skip 0
    for index in (seq 2 (count $words))
        set -l word $words[$index]
        if test $skip -eq 1
            set skip 0
            continue
        end
        switch $word
            case --interval --iterations --lines --log-dir --socket --timeout -d -n
                set skip 1
            case '-*'
            case '*'
                if test -z "$command"
                    set command $word
                else
                    set arguments (math $arguments + 1)
                end
        end
    end
    # The word being completed is an option's value.
    test $skip -eq 0; or return 1
    switch $argv[1]
        case signal
            test "$command" = signal; and test $arguments -eq 0
        case jobs-or-all
            if contains -- "$command" status start stop restart
                return 0
            end
            test "$command" = signal; and test $arguments -gt 0
        case jobs
            if contains -- "$command" top stats
                return 0
            end
            contains -- "$command" pid tail spec; and test $arguments -eq 0
        case none
            contains -- "$command" reread update shutdown; and return 0
            contains -- "$command" pid tail spec; and test $arguments -gt 0
        case '*'
            return 1
    end
end
complete -c supervisorctl -n "__supervisorctl_completes jobs-or-all" -f -a "(__supervisorctl_jobs_or_all)"
complete -c supervisorctl -n "__supervisorctl_completes jobs" -f -a "(__supervisorctl_jobs)"
complete -c supervisorctl -n "__supervisorctl_completes signal" -f -a "HUP INT QUIT ILL TRAP ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM STKFLT CHLD CONT STOP TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO PWR SYS"
complete -c supervisorctl -n "__supervisorctl_completes none" -f
