"""The local stack: the same handlers Lambda runs, behind a local gateway, on embedded stand-ins.

`python -m devstack run` (what `make run` calls) creates the template's queues and
bucket on the embedded parts (one SQLite file of queues and a folder under
$DATA_DIR/aws; LOCAL_AWS=moto starts the AWS emulator instead), drives the
SQS-triggered functions the way Lambda's event-source mapping does, and serves every
HTTP route of infra/template.yaml through functions-framework.
"""
