"""The api process: jobs.v1.JobService over gRPC, and the REST shim that maps HTTP routes onto it."""
