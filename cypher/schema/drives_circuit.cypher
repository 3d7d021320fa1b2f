// Relationship index: feature -> feature edges filtered by circuit id.
// params: none
CREATE INDEX drives_circuit IF NOT EXISTS FOR ()-[r:DRIVES]-() ON (r.circuit)
