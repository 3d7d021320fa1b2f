// Relationship index: GENE_TO_FEATURE rows are selected by circuit id.
// params: none
CREATE INDEX gene_to_feature_circuit IF NOT EXISTS FOR ()-[r:GENE_TO_FEATURE]-() ON (r.circuit)
