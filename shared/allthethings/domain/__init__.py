"""The pure core: assets, their statuses and transitions, content kinds, chunking.

Nothing here imports boto3, pymongo, httpx or a model library.
"""
