// Relationship index: FEATURE_TO_CELL_TYPE rows are selected by circuit id.
// params: none
CREATE INDEX feature_to_cell_type_circuit IF NOT EXISTS FOR ()-[r:FEATURE_TO_CELL_TYPE]-() ON (r.circuit)
