// Example graph (demo v1): merge CellType nodes by name.
// params: $rows (list of {name})
// returns: nothing
UNWIND $rows AS row
MERGE (c:CellType {name: row.name})
