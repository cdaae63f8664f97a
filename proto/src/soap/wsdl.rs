//! The WSDL 1.1 of the terminal service, with its XSD inline. It describes
//! exactly what [`super::messages`] reads and writes; the interop test
//! validates real responses against this schema.

use super::xml::escape_into;

/// The WSDL with `location` as the endpoint address (escaped here).
pub fn wsdl(location: &str) -> String {
    let mut loc = String::with_capacity(location.len());
    escape_into(&mut loc, location);
    let mut out = String::with_capacity(WSDL_HEAD.len() + WSDL_TAIL.len() + 2048);
    out.push_str(WSDL_HEAD);
    for op in super::OPERATIONS {
        out.push_str(&format!(
            r#"
  <wsdl:message name="{op}Request"><wsdl:part name="parameters" element="tns:{op}"/></wsdl:message>
  <wsdl:message name="{op}Response"><wsdl:part name="parameters" element="tns:{op}Response"/></wsdl:message>"#
        ));
    }
    out.push_str(
        r#"
  <wsdl:message name="GatewayFault"><wsdl:part name="fault" element="tns:error"/></wsdl:message>

  <wsdl:portType name="TerminalPortType">"#,
    );
    for op in super::OPERATIONS {
        out.push_str(&format!(
            r#"
    <wsdl:operation name="{op}">
      <wsdl:input message="tns:{op}Request"/>
      <wsdl:output message="tns:{op}Response"/>
      <wsdl:fault name="GatewayFault" message="tns:GatewayFault"/>
    </wsdl:operation>"#
        ));
    }
    out.push_str(
        r#"
  </wsdl:portType>

  <wsdl:binding name="TerminalBinding" type="tns:TerminalPortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>"#,
    );
    for op in super::OPERATIONS {
        out.push_str(&format!(
            r#"
    <wsdl:operation name="{op}">
      <soap:operation soapAction="urn:smart-terminal:gateway:v1/{op}" style="document"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/></wsdl:output>
      <wsdl:fault name="GatewayFault"><soap:fault name="GatewayFault" use="literal"/></wsdl:fault>
    </wsdl:operation>"#
        ));
    }
    out.push_str(
        r#"
  </wsdl:binding>

  <wsdl:service name="TerminalService">
    <wsdl:documentation>Store terminals: orders, catalog, heartbeats and payment-code payments. Every request carries a WS-Security UsernameToken: Username = terminal id, Password (PasswordText) = the terminal's API key.</wsdl:documentation>
    <wsdl:port name="TerminalPort" binding="tns:TerminalBinding">
      <soap:address location=""#,
    );
    out.push_str(&loc);
    out.push_str(WSDL_TAIL);
    out
}

const WSDL_TAIL: &str = r#""/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#;

const WSDL_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions name="TerminalService"
    targetNamespace="urn:smart-terminal:gateway:v1"
    xmlns:tns="urn:smart-terminal:gateway:v1"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <wsdl:types>
    <xsd:schema targetNamespace="urn:smart-terminal:gateway:v1" elementFormDefault="qualified">

      <!-- Simple types: the same rules as the REST API. -->
      <xsd:simpleType name="Ident">
        <xsd:restriction base="xsd:string"><xsd:pattern value="[A-Za-z0-9._\-]{1,64}"/></xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="ShortText">
        <xsd:restriction base="xsd:string"><xsd:minLength value="1"/><xsd:maxLength value="64"/></xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="Money">
        <xsd:annotation><xsd:documentation>CNY with at most 2 decimals, e.g. 35.80.</xsd:documentation></xsd:annotation>
        <xsd:restriction base="xsd:decimal"><xsd:minInclusive value="0"/><xsd:fractionDigits value="2"/></xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="Quantity">
        <xsd:annotation><xsd:documentation>Pieces (whole) or kg (at most 3 decimals), as the product's unit says.</xsd:documentation></xsd:annotation>
        <xsd:restriction base="xsd:decimal"><xsd:minExclusive value="0"/><xsd:fractionDigits value="3"/></xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="StockQuantity">
        <xsd:restriction base="xsd:decimal"><xsd:minInclusive value="0"/><xsd:fractionDigits value="3"/></xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="Unit">
        <xsd:restriction base="xsd:string">
          <xsd:enumeration value="piece"/><xsd:enumeration value="kg"/>
        </xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="Channel">
        <xsd:restriction base="xsd:string">
          <xsd:enumeration value="terminal"/><xsd:enumeration value="third_party"/><xsd:enumeration value="official"/>
        </xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="OrderStatus">
        <xsd:restriction base="xsd:string">
          <xsd:enumeration value="created"/><xsd:enumeration value="accepted"/><xsd:enumeration value="ready"/>
          <xsd:enumeration value="completed"/><xsd:enumeration value="rejected"/><xsd:enumeration value="cancelled"/>
        </xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="OrderAction">
        <xsd:restriction base="xsd:string">
          <xsd:enumeration value="accept"/><xsd:enumeration value="reject"/><xsd:enumeration value="ready"/>
          <xsd:enumeration value="complete"/><xsd:enumeration value="cancel"/>
        </xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="PaymentStatus">
        <xsd:restriction base="xsd:string">
          <xsd:enumeration value="unpaid"/><xsd:enumeration value="pending"/><xsd:enumeration value="paid"/>
          <xsd:enumeration value="partially_refunded"/><xsd:enumeration value="refunded"/>
        </xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="ChargeState">
        <xsd:annotation><xsd:documentation>created and pending are not final; succeeded, failed and reversed are.</xsd:documentation></xsd:annotation>
        <xsd:restriction base="xsd:string">
          <xsd:enumeration value="created"/><xsd:enumeration value="pending"/><xsd:enumeration value="succeeded"/>
          <xsd:enumeration value="failed"/><xsd:enumeration value="reversed"/>
        </xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="RefundState">
        <xsd:annotation><xsd:documentation>requested (not yet accepted by the provider) and processing (accepted, the money on its way) are not final; succeeded and failed are.</xsd:documentation></xsd:annotation>
        <xsd:restriction base="xsd:string">
          <xsd:enumeration value="requested"/><xsd:enumeration value="processing"/><xsd:enumeration value="succeeded"/>
          <xsd:enumeration value="failed"/>
        </xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="PeripheralKind">
        <xsd:restriction base="xsd:string">
          <xsd:enumeration value="printer"/><xsd:enumeration value="scale"/><xsd:enumeration value="scanner"/>
          <xsd:enumeration value="display"/><xsd:enumeration value="drawer"/>
        </xsd:restriction>
      </xsd:simpleType>
      <xsd:simpleType name="PeripheralStatus">
        <xsd:restriction base="xsd:string">
          <xsd:enumeration value="ok"/><xsd:enumeration value="offline"/><xsd:enumeration value="paper_near_end"/>
          <xsd:enumeration value="paper_end"/><xsd:enumeration value="cover_open"/><xsd:enumeration value="error"/>
          <xsd:enumeration value="not_present"/>
        </xsd:restriction>
      </xsd:simpleType>

      <!-- Complex types. -->
      <xsd:complexType name="OrderLineType">
        <xsd:sequence>
          <xsd:element name="sku" type="tns:Ident"/>
          <xsd:element name="name" type="xsd:string"/>
          <xsd:element name="unit" type="tns:Unit"/>
          <xsd:element name="quantity" type="tns:Quantity"/>
          <xsd:element name="unitPrice" type="tns:Money"/>
          <xsd:element name="lineTotal" type="tns:Money"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="StatusChangeType">
        <xsd:sequence>
          <xsd:element name="at" type="xsd:dateTime"/>
          <xsd:element name="by" type="xsd:string"/>
          <xsd:element name="from" type="tns:OrderStatus" minOccurs="0"/>
          <xsd:element name="to" type="tns:OrderStatus"/>
          <xsd:element name="reason" type="xsd:string" minOccurs="0"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="OrderType">
        <xsd:sequence>
          <xsd:element name="id" type="xsd:string"/>
          <xsd:element name="storeId" type="tns:Ident"/>
          <xsd:element name="channel" type="tns:Channel"/>
          <xsd:element name="platform" type="xsd:string" minOccurs="0"/>
          <xsd:element name="channelOrderId" type="xsd:string" minOccurs="0"/>
          <xsd:element name="displayNo" type="xsd:long"/>
          <xsd:element name="businessDay" type="xsd:date"/>
          <xsd:element name="status" type="tns:OrderStatus"/>
          <xsd:element name="paymentStatus" type="tns:PaymentStatus"/>
          <xsd:element name="line" type="tns:OrderLineType" minOccurs="0" maxOccurs="unbounded"/>
          <xsd:element name="total" type="tns:Money"/>
          <xsd:element name="currency" type="xsd:string"/>
          <xsd:element name="note" type="xsd:string" minOccurs="0"/>
          <xsd:element name="createdAt" type="xsd:dateTime"/>
          <xsd:element name="updatedAt" type="xsd:dateTime"/>
          <xsd:element name="seq" type="xsd:long"/>
          <xsd:element name="change" type="tns:StatusChangeType" minOccurs="0" maxOccurs="unbounded"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="SubmitLineType">
        <xsd:sequence>
          <xsd:element name="sku" type="tns:Ident"/>
          <xsd:element name="quantity" type="tns:Quantity"/>
          <!-- Only with soldAt: what the counter charged per unit. -->
          <xsd:element name="unitPrice" type="tns:Money" minOccurs="0"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="CatalogItemType">
        <xsd:sequence>
          <xsd:element name="sku" type="tns:Ident"/>
          <xsd:element name="name" type="xsd:string"/>
          <xsd:element name="unit" type="tns:Unit"/>
          <xsd:element name="price" type="tns:Money"/>
          <xsd:element name="listPrice" type="tns:Money"/>
          <xsd:element name="onHand" type="tns:StockQuantity"/>
          <xsd:element name="reserved" type="tns:StockQuantity"/>
          <xsd:element name="sellable" type="tns:StockQuantity"/>
          <xsd:element name="available" type="xsd:boolean"/>
          <xsd:element name="listed" type="xsd:boolean"/>
          <xsd:element name="snoozedUntil" type="xsd:dateTime" minOccurs="0"/>
          <xsd:element name="barcode" minOccurs="0" maxOccurs="8">
            <xsd:simpleType><xsd:restriction base="xsd:string"><xsd:pattern value="[0-9]{8}|[0-9]{13}"/></xsd:restriction></xsd:simpleType>
          </xsd:element>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="PeripheralHealthType">
        <xsd:sequence>
          <xsd:element name="kind" type="tns:PeripheralKind"/>
          <xsd:element name="status" type="tns:PeripheralStatus"/>
          <xsd:element name="detail" minOccurs="0">
            <xsd:simpleType><xsd:restriction base="xsd:string"><xsd:maxLength value="200"/></xsd:restriction></xsd:simpleType>
          </xsd:element>
        </xsd:sequence>
      </xsd:complexType>

      <xsd:complexType name="ProviderExchangeType">
        <xsd:sequence>
          <xsd:element name="at" type="xsd:dateTime"/>
          <xsd:element name="call" type="xsd:string"/>
          <xsd:element name="outcome" type="xsd:string"/>
          <xsd:element name="detail" type="xsd:string" minOccurs="0"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="ChargeType">
        <xsd:annotation><xsd:documentation>A payment-code charge; id is also the provider's out_trade_no. The code is masked.</xsd:documentation></xsd:annotation>
        <xsd:sequence>
          <xsd:element name="id" type="xsd:string"/>
          <xsd:element name="orderId" type="xsd:string"/>
          <xsd:element name="attempt" type="xsd:long"/>
          <xsd:element name="provider" type="xsd:string"/>
          <xsd:element name="codeKind" type="xsd:string"/>
          <xsd:element name="authCode" type="xsd:string"/>
          <xsd:element name="state" type="tns:ChargeState"/>
          <xsd:element name="failureCode" type="xsd:string" minOccurs="0"/>
          <xsd:element name="failureReason" type="xsd:string" minOccurs="0"/>
          <xsd:element name="amount" type="tns:Money"/>
          <xsd:element name="refunded" type="tns:Money"/>
          <xsd:element name="transactionId" type="xsd:string" minOccurs="0"/>
          <xsd:element name="createdAt" type="xsd:dateTime"/>
          <xsd:element name="updatedAt" type="xsd:dateTime"/>
          <xsd:element name="exchange" type="tns:ProviderExchangeType" minOccurs="0" maxOccurs="unbounded"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="RefundType">
        <xsd:sequence>
          <xsd:element name="id" type="xsd:string"/>
          <xsd:element name="chargeId" type="xsd:string"/>
          <xsd:element name="orderId" type="xsd:string"/>
          <xsd:element name="requestId" type="xsd:string"/>
          <xsd:element name="state" type="tns:RefundState"/>
          <xsd:element name="failureCode" type="xsd:string" minOccurs="0"/>
          <xsd:element name="failureReason" type="xsd:string" minOccurs="0"/>
          <xsd:element name="amount" type="tns:Money"/>
          <xsd:element name="createdAt" type="xsd:dateTime"/>
          <xsd:element name="updatedAt" type="xsd:dateTime"/>
          <xsd:element name="reason" type="xsd:string" minOccurs="0"/>
          <xsd:element name="restock" type="xsd:boolean" minOccurs="0"/>
          <xsd:element name="line" type="tns:RefundedLineType" minOccurs="0" maxOccurs="unbounded"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="RefundedLineType">
        <xsd:annotation><xsd:documentation>One order line's part of a refund: lineNo 1 is the order's first line.</xsd:documentation></xsd:annotation>
        <xsd:sequence>
          <xsd:element name="lineNo" type="xsd:long"/>
          <xsd:element name="sku" type="xsd:string"/>
          <xsd:element name="quantity" type="tns:Quantity"/>
          <xsd:element name="amount" type="tns:Money"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="RefundLineType">
        <xsd:sequence>
          <xsd:element name="lineNo">
            <xsd:simpleType><xsd:restriction base="xsd:long"><xsd:minInclusive value="1"/></xsd:restriction></xsd:simpleType>
          </xsd:element>
          <xsd:element name="quantity" type="tns:Quantity"/>
        </xsd:sequence>
      </xsd:complexType>
      <xsd:complexType name="PrepaidType">
        <xsd:annotation><xsd:documentation>Paid in the app before the order came in; refunded there, not with RefundOrder.</xsd:documentation></xsd:annotation>
        <xsd:sequence>
          <xsd:element name="provider" type="xsd:string"/>
          <xsd:element name="transactionId" type="xsd:string"/>
          <xsd:element name="amount" type="tns:Money"/>
        </xsd:sequence>
      </xsd:complexType>

      <!-- Operations: each request element and its response element. -->
      <xsd:element name="SubmitOrder">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="clientOrderId" type="tns:ShortText"/>
            <xsd:element name="line" type="tns:SubmitLineType" maxOccurs="100"/>
            <xsd:element name="note" minOccurs="0">
              <xsd:simpleType><xsd:restriction base="xsd:string"><xsd:maxLength value="500"/></xsd:restriction></xsd:simpleType>
            </xsd:element>
            <!-- A sale that already happened at the counter: never refused for stock. -->
            <xsd:element name="soldAt" type="xsd:dateTime" minOccurs="0"/>
            <xsd:element name="catalogVersion" type="tns:ShortText" minOccurs="0"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="SubmitOrderResponse">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="replayed" type="xsd:boolean"/>
            <xsd:element name="order" type="tns:OrderType"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>

      <xsd:element name="GetOrder">
        <xsd:complexType>
          <xsd:sequence><xsd:element name="orderId" type="tns:ShortText"/></xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="GetOrderResponse">
        <xsd:complexType>
          <xsd:sequence><xsd:element name="order" type="tns:OrderType"/></xsd:sequence>
        </xsd:complexType>
      </xsd:element>

      <xsd:element name="ListOrders">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="status" type="tns:OrderStatus" minOccurs="0" maxOccurs="6"/>
            <xsd:element name="channel" type="tns:Channel" minOccurs="0"/>
            <xsd:element name="since" minOccurs="0">
              <xsd:simpleType><xsd:restriction base="xsd:long"><xsd:minInclusive value="0"/></xsd:restriction></xsd:simpleType>
            </xsd:element>
            <xsd:element name="limit" minOccurs="0">
              <xsd:simpleType><xsd:restriction base="xsd:int"><xsd:minInclusive value="1"/><xsd:maxInclusive value="500"/></xsd:restriction></xsd:simpleType>
            </xsd:element>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="ListOrdersResponse">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="order" type="tns:OrderType" minOccurs="0" maxOccurs="unbounded"/>
            <xsd:element name="cursor" type="xsd:long"/>
            <xsd:element name="hasMore" type="xsd:boolean"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>

      <xsd:element name="UpdateOrderStatus">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="orderId" type="tns:ShortText"/>
            <xsd:element name="action" type="tns:OrderAction"/>
            <xsd:element name="reason" minOccurs="0">
              <xsd:simpleType><xsd:restriction base="xsd:string"><xsd:maxLength value="200"/></xsd:restriction></xsd:simpleType>
            </xsd:element>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="UpdateOrderStatusResponse">
        <xsd:complexType>
          <xsd:sequence><xsd:element name="order" type="tns:OrderType"/></xsd:sequence>
        </xsd:complexType>
      </xsd:element>

      <xsd:element name="GetCatalog">
        <xsd:complexType>
          <xsd:sequence><xsd:element name="knownVersion" type="xsd:string" minOccurs="0"/></xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="GetCatalogResponse">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="storeId" type="tns:Ident"/>
            <xsd:element name="storeName" type="xsd:string"/>
            <xsd:element name="version" type="xsd:string"/>
            <xsd:element name="unchanged" type="xsd:boolean"/>
            <xsd:element name="currency" type="xsd:string"/>
            <xsd:element name="item" type="tns:CatalogItemType" minOccurs="0" maxOccurs="unbounded"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>

      <xsd:element name="Heartbeat">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="softwareVersion" type="tns:ShortText"/>
            <xsd:element name="peripheral" type="tns:PeripheralHealthType" minOccurs="0" maxOccurs="16"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="HeartbeatResponse">
        <xsd:complexType>
          <xsd:sequence><xsd:element name="receivedAt" type="xsd:dateTime"/></xsd:sequence>
        </xsd:complexType>
      </xsd:element>

      <xsd:element name="PayOrder">
        <xsd:annotation><xsd:documentation>Blocks until the charge is final (about 30 s at most, plus a reverse): give it a long timeout.</xsd:documentation></xsd:annotation>
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="orderId" type="tns:ShortText"/>
            <xsd:element name="authCode" type="tns:ShortText"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="PayOrderResponse">
        <xsd:complexType>
          <xsd:sequence><xsd:element name="charge" type="tns:ChargeType"/></xsd:sequence>
        </xsd:complexType>
      </xsd:element>

      <xsd:element name="GetPayment">
        <xsd:complexType>
          <xsd:sequence><xsd:element name="orderId" type="tns:ShortText"/></xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="GetPaymentResponse">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="orderId" type="xsd:string"/>
            <xsd:element name="paymentStatus" type="tns:PaymentStatus"/>
            <xsd:element name="charge" type="tns:ChargeType" minOccurs="0" maxOccurs="unbounded"/>
            <xsd:element name="refund" type="tns:RefundType" minOccurs="0" maxOccurs="unbounded"/>
            <xsd:element name="prepaid" type="tns:PrepaidType" minOccurs="0"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>

      <xsd:element name="RefundOrder">
        <xsd:annotation><xsd:documentation>An amount, or lines (then the amount is optional and must match them if given). restock (completed orders, with lines only) puts the goods back into stock once refunded.</xsd:documentation></xsd:annotation>
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="orderId" type="tns:ShortText"/>
            <xsd:element name="requestId" type="tns:ShortText"/>
            <xsd:element name="amount" type="tns:Money" minOccurs="0"/>
            <xsd:element name="line" type="tns:RefundLineType" minOccurs="0" maxOccurs="100"/>
            <xsd:element name="reason" minOccurs="0">
              <xsd:simpleType><xsd:restriction base="xsd:string"><xsd:maxLength value="500"/></xsd:restriction></xsd:simpleType>
            </xsd:element>
            <xsd:element name="restock" type="xsd:boolean" minOccurs="0"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="RefundOrderResponse">
        <xsd:complexType>
          <xsd:sequence><xsd:element name="refund" type="tns:RefundType"/></xsd:sequence>
        </xsd:complexType>
      </xsd:element>

      <xsd:element name="TenderCash">
        <xsd:annotation><xsd:documentation>Cash at the counter: tendered is what the customer handed over (at least the total). The same tender again answers the recorded one.</xsd:documentation></xsd:annotation>
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="orderId" type="tns:ShortText"/>
            <xsd:element name="tendered" type="tns:Money"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="TenderCashResponse">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="orderId" type="xsd:string"/>
            <xsd:element name="amount" type="tns:Money"/>
            <xsd:element name="tendered" type="tns:Money"/>
            <xsd:element name="change" type="tns:Money"/>
            <xsd:element name="by" type="xsd:string"/>
            <xsd:element name="at" type="xsd:dateTime"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>

      <!-- The detail of every Fault: the same stable code as REST problems. -->
      <xsd:element name="error">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:element name="code" type="xsd:string"/>
            <xsd:element name="message" type="xsd:string"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
    </xsd:schema>
  </wsdl:types>
"#;
