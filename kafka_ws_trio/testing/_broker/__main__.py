"""``python3 -m _broker`` with ``kafka_ws_trio/testing`` on ``PYTHONPATH``: how ``scripts/kafka`` runs us.

That way the package needs neither ``kafka_ws_trio`` nor ``kafka_ws_trio.testing``
(whose imports need the virtual environment), only the standard library.
"""

import sys

from .cli import main

sys.exit(main())
