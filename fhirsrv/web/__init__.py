"""The public directory: server-rendered pages at `/` for people looking for supportive care.

Built on the FHIR interactions as an anonymous caller (reading.py): what a page lists is what
anonymous `GET /fhir/HealthcareService?...` answers for the same criteria (filters.py holds the
translation), so the pages and the API can never disagree about who is listed.
"""
