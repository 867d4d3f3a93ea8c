"""The replica of a custom server (config.yaml's `docker_server`): starts the user's own HTTP
server and serves Truss's routes in front of it, mapped to the server's endpoints.

Standard library only (asyncio streams, no uvicorn or Starlette): a `no_build` image runs it
on the base image's own python3, where nothing else is installed. Started as
`python -m truss_cli.server.custom --start-command ... --server-port N ...`; it reports the
same ReplicaStatus as the model server, so supervisors treat both alike.
"""
