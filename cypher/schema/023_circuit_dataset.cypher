// Index: circuits are looked up by dataset.
// params: none
CREATE INDEX circuit_dataset IF NOT EXISTS FOR (n:Circuit) ON (n.dataset)
