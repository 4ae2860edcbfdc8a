"""The local stack: the same handlers Lambda runs, behind a local gateway, on embedded stand-ins.

`python -m devstack run` (what `make run` calls) starts the AWS emulator
(moto, server mode, on a free loopback port), creates the template's bucket and
queues, drives the SQS-triggered functions the way Lambda's event-source mapping
does, and serves every HTTP route of infra/template.yaml through functions-framework.
"""
