"""``regtool sync``'s engine: many repositories and tags between registries and directories (see engine.py).

- endpoints.py: a registry with an optional path prefix, or a directory of OCI layouts (one per repository)
- plan.py: sources, tag filters, the per-tag jobs; semver.py: semver ranges; trim.py: ``--platform`` indexes
- skopeo_config.py: skopeo sync's YAML source file
- layout_referrers.py: referrers kept in a directory end's layouts; layout_copy.py: directory -> directory
- referrer_gaps.py: what a ``--referrers-recheck`` dry run lists; request_count.py: what a recheck cost
- engine.py: SyncEngine (compare with one HEAD per end, copy, prune) and its results
"""
