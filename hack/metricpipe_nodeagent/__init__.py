"""metricpipe's local node agent — for development only, never for production.

On a machine without a container engine it stands in for the kubelet of one tainted Node: the
pods the real kube-scheduler binds to that Node (metricpipe's own workloads, which tolerate the
taint) run as local processes of the project's environment. See docs/node-agent.md.
"""
