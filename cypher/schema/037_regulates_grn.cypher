// Relationship index: REGULATES rows are selected by the GRN they came from.
// params: none
CREATE INDEX regulates_grn IF NOT EXISTS FOR ()-[r:REGULATES]-() ON (r.grn)
