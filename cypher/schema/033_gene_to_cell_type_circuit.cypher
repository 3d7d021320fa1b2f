// Relationship index: GENE_TO_CELL_TYPE rows are selected by circuit id.
// params: none
CREATE INDEX gene_to_cell_type_circuit IF NOT EXISTS FOR ()-[r:GENE_TO_CELL_TYPE]-() ON (r.circuit)
