"""The ragrun command-line tool and the local stack it runs."""
