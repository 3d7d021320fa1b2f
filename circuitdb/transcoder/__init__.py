"""circuitdb.transcoder"""
