// Relationship index: HEAD_CARRIES rows are selected by circuit id.
// params: none
CREATE INDEX head_carries_circuit IF NOT EXISTS FOR ()-[r:HEAD_CARRIES]-() ON (r.circuit)
