"""VM requests: submission, endorsement, approval, provisioning, delivery.

Importing the package registers its part in the lower domains' use cases (a pool an undelivered
request names is not deleted: :mod:`vmportal.request.pools`).
"""

from vmportal.request import pools as _pools

_pools.register()
