"""A process that runs and never answers a ping: how a service stuck before it is ready looks to a test."""

import time

if __name__ == "__main__":
    while True:
        time.sleep(1)
