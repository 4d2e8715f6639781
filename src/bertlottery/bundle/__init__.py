"""Study bundles: a run's small artifacts (metrics, masks, traces, data cards, config, versions, hardware)
with a sha256 manifest, and the results tree the analyses need rebuilt from one or more of them."""
