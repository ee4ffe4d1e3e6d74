//! UPnP Internet Gateway Device: finding the WAN connection service in a
//! device description, and its SOAP actions (`GetExternalIPAddress`,
//! `AddPortMapping`, `DeletePortMapping`) with their replies and faults.
//!
//! The XML involved is small and flat, so it is read with a few string
//! scans rather than an XML library: elements are found by local name
//! (any namespace prefix), their text unescaped. A description lists
//! services as
//!
//! ```text
//! <service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
//!          <controlURL>/ctl/IPConn</controlURL>...</service>
//! ```
//!
//! and a fault carries `<errorCode>718</errorCode>` (conflict),
//! `<errorCode>725</errorCode>` (only permanent leases) and so on.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::http::{self, HttpUrl, Malformed, Response};

/// The WAN connection services we can map ports with, most preferred first.
pub const WAN_SERVICES: [&str; 3] = [
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];

/// UPnP error: the external port is taken by another client.
pub const CONFLICT_IN_MAPPING_ENTRY: u16 = 718;
/// UPnP error: the gateway grants only leases without an end (duration 0).
pub const ONLY_PERMANENT_LEASES_SUPPORTED: u16 = 725;
/// UPnP error: the external port must equal the internal one.
pub const SAME_PORT_VALUES_REQUIRED: u16 = 724;

/// A gateway's WAN connection service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WanService {
    /// Its service type, one of [`WAN_SERVICES`].
    pub service_type: String,
    /// Where its SOAP actions are posted.
    pub control: HttpUrl,
}

/// Finds the most preferred WAN connection service in the description
/// fetched from `location`.
pub fn find_wan_service(description: &str, location: &HttpUrl) -> Result<WanService, Malformed> {
    let base = match element_text(description, "URLBase") {
        Some(base) if !base.trim().is_empty() => HttpUrl::parse(&base)?,
        _ => location.clone(),
    };
    let mut best: Option<(usize, String, String)> = None;
    for service in elements(description, "service") {
        let (Some(kind), Some(control)) = (element_text(service, "serviceType"), element_text(service, "controlURL"))
        else {
            continue;
        };
        let kind = kind.trim().to_owned();
        let Some(rank) = WAN_SERVICES.iter().position(|s| s.eq_ignore_ascii_case(&kind)) else { continue };
        if best.as_ref().is_none_or(|(r, ..)| rank < *r) {
            best = Some((rank, kind, control));
        }
    }
    let (_, service_type, control) = best.ok_or(Malformed("device description: no WAN connection service"))?;
    Ok(WanService { control: base.join(&control)?, service_type })
}

/// A SOAP action's request: `action` of `service` with `args` in order.
pub fn request(service: &WanService, action: &str, args: &[(&str, String)]) -> Vec<u8> {
    let mut body = String::from(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>",
    );
    let _ = write!(body, "<u:{action} xmlns:u=\"{}\">", escape(&service.service_type));
    for (name, value) in args {
        let _ = write!(body, "<{name}>{}</{name}>", escape(value));
    }
    let _ = write!(body, "</u:{action}></s:Body></s:Envelope>\r\n");
    let soap_action = format!("\"{}#{action}\"", service.service_type);
    http::post(
        &service.control,
        &[("Content-Type", "text/xml; charset=\"utf-8\""), ("SOAPAction", &soap_action)],
        &body,
    )
}

/// `GetExternalIPAddress`.
pub fn get_external_ip(service: &WanService) -> Vec<u8> {
    request(service, "GetExternalIPAddress", &[])
}

/// `AddPortMapping` of UDP `external_port` to `client:internal_port` for
/// `lease` seconds (0: no end).
pub fn add_port_mapping(
    service: &WanService,
    external_port: u16,
    client: IpAddr,
    internal_port: u16,
    description: &str,
    lease: u32,
) -> Vec<u8> {
    request(
        service,
        "AddPortMapping",
        &[
            ("NewRemoteHost", String::new()),
            ("NewExternalPort", external_port.to_string()),
            ("NewProtocol", "UDP".to_owned()),
            ("NewInternalPort", internal_port.to_string()),
            ("NewInternalClient", client.to_string()),
            ("NewEnabled", "1".to_owned()),
            ("NewPortMappingDescription", description.to_owned()),
            ("NewLeaseDuration", lease.to_string()),
        ],
    )
}

/// `DeletePortMapping` of UDP `external_port`.
pub fn delete_port_mapping(service: &WanService, external_port: u16) -> Vec<u8> {
    request(
        service,
        "DeletePortMapping",
        &[
            ("NewRemoteHost", String::new()),
            ("NewExternalPort", external_port.to_string()),
            ("NewProtocol", "UDP".to_owned()),
        ],
    )
}

/// How an action went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done; the response body, for the output arguments.
    Done(String),
    /// Refused: the UPnP error code (when the fault has one) and text.
    Fault {
        /// The `errorCode`, e.g. [`CONFLICT_IN_MAPPING_ENTRY`].
        code: Option<u16>,
        /// The `errorDescription`, or the HTTP status when there is none.
        description: String,
    },
}

impl Reply {
    /// Reads an action's HTTP response: 200 is done, anything else a fault.
    pub fn parse(response: &Response) -> Result<Self, Malformed> {
        let body = String::from_utf8_lossy(&response.body).into_owned();
        if response.status == 200 {
            return Ok(Self::Done(body));
        }
        let code = element_text(&body, "errorCode").and_then(|c| c.trim().parse().ok());
        let description = element_text(&body, "errorDescription")
            .map(|d| d.trim().chars().take(100).collect())
            .unwrap_or_else(|| format!("HTTP status {}", response.status));
        Ok(Self::Fault { code, description })
    }
}

/// The external address in a `GetExternalIPAddress` reply.
pub fn external_ip(reply_body: &str) -> Result<IpAddr, Malformed> {
    let text = element_text(reply_body, "NewExternalIPAddress").ok_or(Malformed("reply: no NewExternalIPAddress"))?;
    text.trim().parse().map_err(|_| Malformed("reply: NewExternalIPAddress is not an address"))
}

/// The text of the first element called `name` (any prefix), unescaped;
/// `None` when there is none.
pub fn element_text(xml: &str, name: &str) -> Option<String> {
    elements(xml, name).next().map(unescape)
}

/// The contents of each element called `name` (any prefix), raw. Elements
/// of the same name nested in one another are not supported (IGD
/// documents have none).
fn elements<'a>(xml: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let (start, self_closing) = find_open(xml, pos, name)?;
        if self_closing {
            pos = start;
            return Some("");
        }
        let (end, after) = find_close(xml, start, name)?;
        pos = after;
        xml.get(start..end)
    })
}

/// The local part of a tag name (`u:Foo` is `Foo`).
fn local(tag: &str) -> &str {
    tag.rsplit(':').next().unwrap_or(tag)
}

/// From `pos`, the first opening tag `name`: where its content starts and
/// whether it closes itself (`<name/>`).
fn find_open(xml: &str, mut pos: usize, name: &str) -> Option<(usize, bool)> {
    loop {
        let lt = pos + xml.get(pos..)?.find('<')?;
        let rest = xml.get(lt + 1..)?;
        let gt = lt + 1 + rest.find('>')?;
        let tag = xml.get(lt + 1..gt)?;
        pos = gt + 1;
        if tag.starts_with(['/', '?', '!']) {
            continue;
        }
        let tag_name = tag.split(|c: char| c.is_ascii_whitespace() || c == '/').next().unwrap_or_default();
        if local(tag_name) == name {
            return Some((gt + 1, tag.ends_with('/')));
        }
    }
}

/// From `pos`, the closing tag `</name>`: where it starts and where it ends.
fn find_close(xml: &str, mut pos: usize, name: &str) -> Option<(usize, usize)> {
    loop {
        let lt = pos + xml.get(pos..)?.find("</")?;
        let gt = lt + xml.get(lt..)?.find('>')?;
        let tag = xml.get(lt + 2..gt)?.trim();
        pos = gt + 1;
        if local(tag) == name {
            return Some((lt, gt + 1));
        }
    }
}

/// XML's five named entities and numeric character references.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let Some(semi) = after.find(';').filter(|s| *s <= 10) else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let entity = &after[1..semi];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match ch {
            Some(ch) => {
                out.push(ch);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text made safe inside an XML element or attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The shape of miniupnpd's root description (trimmed).
    const DESCRIPTION: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>1</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>
<controlURL>/ctl/L3F</controlURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANPPPConn1</serviceId><controlURL>/ctl/PPP</controlURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl/IPConn</controlURL>
<eventSubURL>/evt/IPConn</eventSubURL><SCPDURL>/WANIPCn.xml</SCPDURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>"#;

    fn location() -> HttpUrl {
        HttpUrl::parse("http://10.9.0.1:5000/rootDesc.xml").unwrap()
    }

    #[test]
    fn the_wan_ip_service_is_preferred() {
        let service = find_wan_service(DESCRIPTION, &location()).unwrap();
        assert_eq!(service.service_type, WAN_SERVICES[1]);
        assert_eq!(service.control, HttpUrl::parse("http://10.9.0.1:5000/ctl/IPConn").unwrap());

        let ppp_only = DESCRIPTION.replace("WANIPConnection", "Other");
        let service = find_wan_service(&ppp_only, &location()).unwrap();
        assert_eq!((service.service_type.as_str(), service.control.path.as_str()), (WAN_SERVICES[2], "/ctl/PPP"));

        let based = DESCRIPTION.replace("<device>", "<URLBase>http://10.9.0.9:80/</URLBase><device>");
        assert_eq!(find_wan_service(&based, &location()).unwrap().control.addr, "10.9.0.9:80".parse().unwrap());

        let none = DESCRIPTION.replace("WAN", "LAN");
        assert!(find_wan_service(&none, &location()).is_err());
    }

    #[test]
    fn actions_are_soap_posts() {
        let service = find_wan_service(DESCRIPTION, &location()).unwrap();
        let text =
            String::from_utf8(add_port_mapping(&service, 33445, "10.9.0.2".parse().unwrap(), 33445, "tuntox", 3600))
                .unwrap();
        assert!(text.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 10.9.0.1:5000\r\n"), "{text}");
        assert!(text.contains("SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping\"\r\n"));
        assert!(text.contains(
            "<NewRemoteHost></NewRemoteHost><NewExternalPort>33445</NewExternalPort><NewProtocol>UDP</NewProtocol>\
             <NewInternalPort>33445</NewInternalPort><NewInternalClient>10.9.0.2</NewInternalClient>\
             <NewEnabled>1</NewEnabled><NewPortMappingDescription>tuntox</NewPortMappingDescription>\
             <NewLeaseDuration>3600</NewLeaseDuration>"
        ));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        let delete = String::from_utf8(delete_port_mapping(&service, 40000)).unwrap();
        assert!(delete.contains("<u:DeletePortMapping xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\">"));
        assert!(String::from_utf8(get_external_ip(&service)).unwrap().contains("#GetExternalIPAddress\""));
    }

    #[test]
    fn replies_and_faults() {
        let ok = Response::parse(
            b"HTTP/1.1 200 OK\r\n\r\n<s:Envelope><s:Body><u:GetExternalIPAddressResponse xmlns:u=\"x\">\
              <NewExternalIPAddress>11.0.0.1</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>",
        )
        .unwrap();
        let Reply::Done(body) = Reply::parse(&ok).unwrap() else { panic!("not done") };
        assert_eq!(external_ip(&body).unwrap(), "11.0.0.1".parse::<IpAddr>().unwrap());
        assert!(external_ip("<NewExternalIPAddress></NewExternalIPAddress>").is_err());

        let fault = Response::parse(
            b"HTTP/1.1 500 Internal Server Error\r\n\r\n<s:Envelope><s:Body><s:Fault><faultcode>s:Client</faultcode>\
              <detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>718</errorCode>\
              <errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>",
        )
        .unwrap();
        assert_eq!(
            Reply::parse(&fault).unwrap(),
            Reply::Fault { code: Some(CONFLICT_IN_MAPPING_ENTRY), description: "ConflictInMappingEntry".to_owned() }
        );
        let bare = Response::parse(b"HTTP/1.1 403 Forbidden\r\n\r\n").unwrap();
        assert_eq!(Reply::parse(&bare).unwrap(), Reply::Fault { code: None, description: "HTTP status 403".into() });
    }

    #[test]
    fn xml_text_is_unescaped_and_escaped() {
        assert_eq!(
            element_text("<a:x>1 &amp; 2 &lt;&#65;&#x42;&gt; &bogus; &</a:x>", "x").unwrap(),
            "1 & 2 <AB> &bogus; &"
        );
        assert_eq!(element_text("<x/><x>later</x>", "x").unwrap(), "");
        assert_eq!(element_text("<xy>no</xy>", "x"), None);
        assert_eq!(element_text("<x attr=\"1\">yes</x >", "x").unwrap(), "yes");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    proptest! {
        #[test]
        fn reading_never_panics(text in ".{0,200}") {
            let _ = find_wan_service(&text, &location());
            let _ = element_text(&text, "serviceType");
            let _ = external_ip(&text);
        }

        #[test]
        fn reading_a_mangled_description_never_panics(cut in 0usize..2000, at in 0usize..2000, ch: char) {
            let mut text: String = DESCRIPTION.chars().take(cut).collect();
            if text.is_char_boundary(at.min(text.len())) {
                text.insert(at.min(text.len()), ch);
            }
            let _ = find_wan_service(&text, &location());
        }
    }
}
