// Example graph (demo v1): merge transcoder Feature nodes by deterministic id.
// params: $rows (list of {id, layer, index, transcoder_set})
// returns: nothing
UNWIND $rows AS row
MERGE (f:Feature {id: row.id})
SET f.layer = row.layer, f.index = row.index, f.transcoder_set = row.transcoder_set
