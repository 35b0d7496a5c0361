/* The public directory's only script: the map of the places shown, kept in step with the list,
   and the town suggestions. Everything else works without it. */
(function () {
  "use strict";

  function markersData() {
    var node = document.getElementById("map-data");
    if (!node) { return []; }
    try { return JSON.parse(node.textContent || "[]"); } catch (e) { return []; }
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }[c];
    });
  }

  function highlight(offerIds, on) {
    offerIds.forEach(function (id) {
      var item = document.querySelector('[data-offer="' + id + '"]');
      if (item) { item.classList.toggle("highlight", on); }
    });
  }

  // Places at the same position (several addresses of one building, or places known only by
  // their town) share one marker: stacked markers would hide all but the top one.
  function byPosition(markers) {
    var groups = [];
    var index = {};
    markers.forEach(function (m) {
      var key = m.lat.toFixed(5) + "," + m.lon.toFixed(5);
      if (!(key in index)) {
        index[key] = groups.length;
        groups.push({ lat: m.lat, lon: m.lon, places: [], offers: [] });
      }
      var group = groups[index[key]];
      group.places.push({ title: m.title, address: m.address });
      m.offers.forEach(function (o) {
        if (!group.offers.some(function (known) { return known.n === o.n; })) { group.offers.push(o); }
      });
    });
    groups.forEach(function (g) { g.offers.sort(function (a, b) { return a.n - b.n; }); });
    return groups;
  }

  // "4", "4, 7", "3–9" for a run of numbers, "3, 8, …" otherwise.
  function numbersLabel(numbers) {
    if (numbers.length <= 3) { return numbers.join(", "); }
    var last = numbers[numbers.length - 1];
    if (last - numbers[0] === numbers.length - 1) { return numbers[0] + "–" + last; }
    return numbers[0] + ", " + numbers[1] + ", …";
  }

  function drawMap() {
    var box = document.getElementById("map");
    if (!box || typeof L === "undefined") { return; }
    var groups = byPosition(markersData());
    var map = L.map(box, { scrollWheelZoom: false });
    box.setAttribute("data-ready", "0");
    var tiles = box.getAttribute("data-tiles");
    if (tiles) {
      L.tileLayer(tiles, { attribution: box.getAttribute("data-attribution") || "", maxZoom: 18 }).addTo(map);
    } else {
      box.classList.add("no-tiles");
    }
    var outlines = box.getAttribute("data-outlines");
    if (outlines) {
      fetch(outlines).then(function (r) { return r.json(); }).then(function (shapes) {
        if (!tiles) {
          // Without tiles the outlines are the whole map: land drawn white over the sea's
          // colour, then every border on top (the coarse shapes overlap).
          L.geoJSON(shapes, { style: { stroke: false, fillColor: "#ffffff", fillOpacity: 1 }, interactive: false }).addTo(map);
        }
        L.geoJSON(shapes, { style: { color: "#0b4f8a", weight: 1, fill: !!tiles, fillOpacity: 0.04 }, interactive: false }).addTo(map);
      }).catch(function () { /* the markers stand alone */ });
    }
    var bounds = [];
    groups.forEach(function (g) {
      var numbers = g.offers.map(function (o) { return o.n; });
      var titles = g.places.map(function (p) { return p.title; }).filter(function (t, i, all) {
        return t && all.indexOf(t) === i;
      });
      var title = titles.slice(0, 3).join(" · ") + (titles.length > 3 ? " · …" : "");
      var icon = L.divIcon({
        className: "pin", html: '<span class="number">' + escapeHtml(numbersLabel(numbers)) + "</span>", iconSize: null
      });
      var marker = L.marker([g.lat, g.lon], { icon: icon, title: title, keyboard: true, alt: title }).addTo(map);
      var places = g.places.map(function (p) {
        return "<p><strong>" + escapeHtml(p.title) + "</strong><br>" + p.address.map(escapeHtml).join("<br>") + "</p>";
      }).filter(function (html, i, all) { return all.indexOf(html) === i; }).join("");
      var links = g.offers.map(function (o) {
        return '<li><a href="' + escapeHtml(o.url) + '">' + escapeHtml(o.n + ". " + o.name) + "</a></li>";
      }).join("");
      marker.bindPopup('<div class="popup">' + places + "<ul>" + links + "</ul></div>", { maxHeight: 260 });
      var ids = g.offers.map(function (o) { return o.url.split("/").pop(); });
      marker.on("mouseover", function () { highlight(ids, true); });
      marker.on("mouseout", function () { highlight(ids, false); });
      marker.on("click", function () {
        var first = document.getElementById("offer-" + ids[0]);
        if (first) { first.scrollIntoView({ block: "nearest" }); }
      });
      ids.forEach(function (id) {
        var item = document.querySelector('[data-offer="' + id + '"]');
        if (item) {
          item.addEventListener("mouseenter", function () { marker.openPopup(); });
        }
      });
      bounds.push([g.lat, g.lon]);
    });
    if (bounds.length) {
      // Without tiles, a close-up would show an empty square: stay far enough out for the
      // outlines of the départements to say where the places are.
      map.fitBounds(bounds, { padding: [24, 24], maxZoom: tiles ? 13 : 9 });
    } else {
      map.setView([46.6, 2.4], 5);
    }
    box.setAttribute("data-markers", String(groups.length));
    box.setAttribute("data-ready", "1");
  }

  function suggestTowns() {
    var field = document.getElementById("f-commune");
    var list = document.getElementById("communes");
    if (!field || !list) { return; }
    var url = field.getAttribute("data-suggest");
    var pending = null;
    field.addEventListener("input", function () {
      var typed = field.value.trim();
      if (pending) { clearTimeout(pending); }
      if (typed.length < 2) { return; }
      pending = setTimeout(function () {
        fetch(url + "?q=" + encodeURIComponent(typed)).then(function (r) { return r.json(); }).then(function (found) {
          list.innerHTML = "";
          found.forEach(function (c) {
            var option = document.createElement("option");
            option.value = c.label;
            list.appendChild(option);
          });
        }).catch(function () { /* the field still takes a typed town */ });
      }, 150);
    });
  }

  function nearMe() {
    var button = document.getElementById("near-me");
    var town = document.getElementById("f-commune");
    if (!button || !town || !navigator.geolocation) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.geolocation.getCurrentPosition(function (where) {
        var form = town.form;
        // Rounded to 0.01° (about 1 km): the link can be shared without giving a home away.
        [["lat", where.coords.latitude], ["lon", where.coords.longitude]].forEach(function (pair) {
          var field = form.querySelector('input[name="' + pair[0] + '"]');
          if (!field) {
            field = document.createElement("input");
            field.type = "hidden";
            field.name = pair[0];
            form.appendChild(field);
          }
          field.value = pair[1].toFixed(2);
        });
        town.value = "";
        form.submit();
      }, function () {
        var note = document.createElement("span");
        note.className = "error";
        note.setAttribute("role", "alert");
        note.textContent = button.getAttribute("data-error");
        button.insertAdjacentElement("afterend", note);
      }, { timeout: 10000, maximumAge: 600000 });
    });
    town.addEventListener("input", function () {
      // A typed town replaces the position.
      town.form.querySelectorAll('input[name="lat"], input[name="lon"]').forEach(function (f) { f.remove(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawMap();
    suggestTowns();
    nearMe();
  });
}());
