// Relationship index: FEATURE_TO_FEATURE rows are selected by circuit id.
// params: none
CREATE INDEX feature_to_feature_circuit IF NOT EXISTS FOR ()-[r:FEATURE_TO_FEATURE]-() ON (r.circuit)
