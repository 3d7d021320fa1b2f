// Relationship index: ENRICHED_FOR rows are selected by gene-set library.
// params: none
CREATE INDEX enriched_for_library IF NOT EXISTS FOR ()-[r:ENRICHED_FOR]-() ON (r.library)
