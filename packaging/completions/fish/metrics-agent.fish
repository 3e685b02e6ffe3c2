complete -c metrics-agent -l listen -d 'Address to serve /metrics and /healthz on' -r
complete -c metrics-agent -l run-dir -d 'Runtime state root; containers are found in RUN_DIR/containers' -r -F
complete -c metrics-agent -l cgroup-root -d 'Also export every cgroup from this directory down. On cgroup v1 give the directory in one controller\'s hierarchy, such as /sys/fs/cgroup/memory/corral' -r -F
complete -c metrics-agent -l container-label -d 'Export only this label of the containers\' state files as `container_label_KEY`. Repeat it for more keys. Without it, every label is exported' -r
complete -c metrics-agent -l scrape-threads -d 'Maximum number of threads that read containers during one scrape (one per 64 containers). Default: the number of CPUs, at most 4' -r
complete -c metrics-agent -l kept-descriptors -d 'Maximum number of cgroup and /proc descriptors kept open between scrapes; files beyond it are opened on every scrape. Each kept cgroup file also uses about 4 KiB of kernel memory. Default: the soft limit of open files, raised to the hard limit at start, minus 512' -r
complete -c metrics-agent -l supervisor-socket -d 'The supervisor\'s control socket, for the corral_job_* metrics' -r -F
complete -c metrics-agent -l per-cpu -d 'Export v1 CPU usage per CPU (`cpu="cpu00"`, ...) instead of one `cpu="total"` series'
complete -c metrics-agent -l no-container-labels -d 'Export no `container_label_*` labels'
complete -c metrics-agent -s h -l help -d 'Print help'
complete -c metrics-agent -s V -l version -d 'Print version'
