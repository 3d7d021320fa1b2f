// Relationship index: HAS_GENE rows are selected by circuit id.
// params: none
CREATE INDEX has_gene_circuit IF NOT EXISTS FOR ()-[r:HAS_GENE]-() ON (r.circuit)
