// Round trip that checks the connection, the credentials and the database.
// params: none
// returns: ok (1)
RETURN 1 AS ok
