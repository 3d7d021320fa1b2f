// Upsert Circuit nodes with their provenance, marked incomplete until circuit_complete runs,
// and link them to their cell type, dataset, transcoder set and model (all written first).
// params: $rows: [{id, cell_type, dataset, model, transcoder_set, method, thresholds (JSON text),
//          n_cells, cells (JSON text), created, code_version, model_name, transcoders, content_hash}]
// returns: n (rows written)
UNWIND $rows AS r
MERGE (c:Circuit {id: r.id})
SET c.cell_type = r.cell_type, c.dataset = r.dataset, c.model = r.model, c.transcoder_set = r.transcoder_set,
    c.method = r.method, c.thresholds = r.thresholds, c.n_cells = r.n_cells, c.cells = r.cells,
    c.created = r.created, c.code_version = r.code_version, c.model_name = r.model_name,
    c.transcoders = r.transcoders, c.content_hash = r.content_hash, c.complete = false
WITH c, r
MATCH (ct:CellType {name: r.cell_type})
MATCH (d:Dataset {id: r.dataset})
MATCH (t:TranscoderSet {id: r.transcoder_set})
MATCH (m:Model {id: r.model})
MERGE (c)-[:FOR_CELL_TYPE]->(ct)
MERGE (c)-[:ON_DATASET]->(d)
MERGE (c)-[:USES_TRANSCODERS]->(t)
MERGE (c)-[:OF_MODEL]->(m)
RETURN count(*) AS n
