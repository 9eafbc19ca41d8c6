"""kumo.dns: DNS lookups for policies, asynchronous and cached for their TTL.

- `records`: what an answer is (Records), query names, reverse names;
- `cache`: answers kept for their TTL, least recently used out first;
- `sources`: where answers come from (name servers, or a test's table);
- `lookups`: what kumo.dns functions return, with lookups in flight shared.
"""
