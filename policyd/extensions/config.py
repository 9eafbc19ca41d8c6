"""KumoMTA's configuration functions that mean nothing at reception here
(spools, logs, egress, queues, threads, memory): each accepted and ignored,
with one load warning naming the first place it was called."""

from __future__ import annotations

from policyd.extensions import Context, HostFunctions

# name -> what configures that here instead (for the warning).
IGNORED = {
    "define_spool": "the edge hands accepted mail on durably itself",
    "configure_local_logs": "the daemon's decision log and JSON log",
    "configure_log_hook": "the daemon's decision log",
    "configure_accounting_db_path": "nothing (no accounting here)",
    "configure_bounce_classifier": "nothing (no delivery here)",
    "start_http_listener": "the daemon's --metrics and gRPC listeners",
    "set_httpinject_recipient_rate_limit": "nothing (no HTTP injection here)",
    "set_httpinject_threads": "nothing (no HTTP injection here)",
    "set_logging_threads": "the daemon's own threads",
    "set_qmaint_threads": "the daemon's own threads",
    "set_ready_qmaint_threads": "the daemon's own threads",
    "set_readyq_threads": "the daemon's own threads",
    "set_smtpsrv_threads": "the edge",
    "set_spoolin_threads": "the daemon's own threads",
    "set_lruttl_cache_capacity": "nothing",
    "set_max_lua_context_age": "the daemon's Lua states, one per revision and worker",
    "set_max_lua_context_use_count": "the daemon's Lua states, one per revision and worker",
    "set_max_spare_lua_contexts": "the daemon's Lua states, one per revision and worker",
    "set_memory_hard_limit": "the daemon's --memory limit per Lua state",
    "set_memory_low_thresh": "the daemon's --memory limit per Lua state",
    "set_memory_soft_limit": "the daemon's --memory limit per Lua state",
    "set_config_monitor_globs": "the daemon's own file watching",
    "eval_config_monitor_globs": "the daemon's own file watching",
    "bump_config_epoch": "the daemon's revisions (a changed file is a new one)",
    "suspend_delivery_when_spool_unhealthy": "nothing (no delivery here)",
    "make_egress_path": "nothing (no delivery here)",
    "make_egress_pool": "nothing (no delivery here)",
    "make_egress_source": "nothing (no delivery here)",
    "make_queue_config": "nothing (no queues here)",
    "dns.configure_resolver": "the daemon's --dns-server flags",
    "dns.configure_unbound_resolver": "the daemon's --dns-server flags",
    "dns.define_resolver": "the daemon's --dns-server flags",
    "dns.load_resolv_conf": "the daemon's --dns-server flags",
    "dns.set_mx_concurrency_limit": "nothing (the daemon's DNS cache)",
    "dns.set_mx_negative_cache_ttl": "nothing (the daemon's DNS cache)",
    "dns.set_mx_timeout": "the evaluation's deadline",
    "dns.set_mta_sts_enabled": "nothing (no delivery here)",
}


def functions(context: Context) -> HostFunctions:
    warned: set[str] = set()

    def warn(name: str, where: str) -> None:
        if name not in warned:
            warned.add(name)
            context.warn(f"{where}: kumo.{name} is accepted and ignored here ({IGNORED[name]})")

    return {"warn": warn, "names": context.lua.table_from(sorted(IGNORED))}
