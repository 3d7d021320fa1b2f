// Relationship index: HAS_FEATURE rows are selected by circuit id.
// params: none
CREATE INDEX has_feature_circuit IF NOT EXISTS FOR ()-[r:HAS_FEATURE]-() ON (r.circuit)
