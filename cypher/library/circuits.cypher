// The stored circuits with their provenance, optionally for one cell type and/or dataset.
// params: $cell_type (text or null = any), $dataset (dataset id or null = any)
// returns: id, cell_type, dataset, model, model_name, transcoder_set, transcoders, method, thresholds (JSON text),
//          n_cells, created, code_version, complete, n_edges, n_nodes
MATCH (c:Circuit)
WHERE ($cell_type IS NULL OR c.cell_type = $cell_type) AND ($dataset IS NULL OR c.dataset = $dataset)
RETURN c.id AS id, c.cell_type AS cell_type, c.dataset AS dataset, c.model AS model, c.model_name AS model_name,
       c.transcoder_set AS transcoder_set, c.transcoders AS transcoders, c.method AS method,
       c.thresholds AS thresholds, c.n_cells AS n_cells, c.created AS created, c.code_version AS code_version,
       c.complete AS complete, c.n_edges AS n_edges, c.n_nodes AS n_nodes
ORDER BY cell_type, dataset, id
